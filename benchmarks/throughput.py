"""Throughput, latency and CPU per task of no-op tasks: Flame for Python beside its baselines.

Measured in one run on one machine, each system --repeat times (figures are medians of the runs):

- concurrent.futures.ProcessPoolExecutor(2), the baseline;
- Ray actors: --executors actors, tasks sent round-robin (Ray from the ``bench`` extra;
  skipped with a message when it is not installed);
- Flame (a): our client and the built-in flmping service, written with our SDK;
- Flame (b): our client and an unmodified flamepy 0.6.0 service (benchmarks/_flamepy_noop.py);
- Flame (a) split: as (a), with the session manager and an executor manager in processes of their
  own (as on separate machines), so the session manager's own CPU per task shows: it is what caps
  a cluster of many nodes;
- the gRPC floor: the shape of Flame's task path (client -> relay -> 2 echo processes on grpc.aio
  streams) with no work in it (benchmarks/_grpc_floor.py), so latency has a floor to be read against;
- the flamepy ceiling: the same flamepy services called directly with bare grpc.aio unary calls,
  one in flight per service (benchmarks/_flamepy_floor.py): a driver making these calls and doing
  anything besides (as Flame's session manager must) runs fewer tasks a second.

Each Flame run starts its own ``flame up`` (a separate process, sqlite storage in a temporary data
dir, --executors executors). Workloads: --tasks tasks with 16-byte inputs submitted at once
(tasks/s), then --latency-tasks tasks one after another (median and p99 round trip). For Flame it
also reports the CPU microseconds per task of every process of ``flame up``'s tree and of this
client across the throughput phase (utime+stime from /proc), the time from spawning ``flame up``
to the first task result, and the idle PSS of the whole tree. A final block checks issue 8's targets.

Usage: python benchmarks/throughput.py [--tasks 10000] [--latency-tasks 200] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _flame_up import FlameUp, flame_split, flame_up
from _flamepy_floor import FlamepyCeiling
from _grpc_floor import Floor
from _procfs import CpuMeter, Labeler, cmdline, process_tree, pss_kb

import flame
from flame.types import ExecutorState

# 16 bytes that flmping reads as "no duration" (blank input); the other services echo it back.
PAYLOAD = b" " * 16
WARM_UP_TASKS = 100
TASK_TIMEOUT = 600.0
FLAMEPY_SERVICE = Path(__file__).resolve().with_name("_flamepy_noop.py")
FLAMEPY_APPLICATION = "bench-flamepy-noop"


# ---------------------------------------------------------------- roles of processes


FLAME_UP = "flame up (session manager)"
FLAME_UP_WITH_NODE = "flame up (session manager + local node)"


def flame_role(depth: int, command: str) -> str:
    if depth == 0:
        return FLAME_UP
    if "executor-manager" in command:
        return "executor manager"
    if "flame.apps.flmping" in command or "[flmping]" in command:
        return "service (our SDK)"
    if FLAMEPY_SERVICE.stem in command:
        return "service (flamepy)"
    return "other"


SPLIT_SESSION_MANAGER = "session manager (its own process)"


def split_role(depth: int, command: str) -> str:
    if "executor-manager" in command:  # before session-manager: its command line names that too
        return "executor manager"
    if "session-manager" in command:
        return SPLIT_SESSION_MANAGER
    return flame_role(depth, command)


def ray_role(depth: int, command: str) -> str:
    if command.startswith("ray::"):
        return "ray workers"
    for name in ("raylet", "gcs_server"):
        if name in command:
            return f"ray {name}"
    return "ray other"


def pool_role(depth: int, command: str) -> str:
    return "pool workers"


def floor_role(depth: int, command: str) -> str:
    return "floor relay" if " relay " in f" {command} " else "floor echo processes"


def ceiling_role(depth: int, command: str) -> str:
    return "service (flamepy)"


# ---------------------------------------------------------------- one run of one system


@dataclass
class Run:
    tasks_per_s: float
    latency_median_ms: float
    latency_p99_ms: float
    cpu_us_per_task: dict[str, float]
    first_result_s: float | None = None
    listening_s: float | None = None  # from the spawn until flame up accepted a connection
    idle_pss_mb: float | None = None
    idle_pss_mb_by_role: dict[str, float] = field(default_factory=dict)


class Driver:
    """How a benchmark talks to one system: a burst of tasks at once, or one task."""

    def run_burst(self, count: int) -> list[bytes]:
        raise NotImplementedError

    def run_one(self) -> bytes:
        raise NotImplementedError


class FutureDriver(Driver):
    def __init__(self, submit: Callable[[bytes], Future[bytes]]) -> None:
        self.submit = submit

    def run_burst(self, count: int) -> list[bytes]:
        futures = [self.submit(PAYLOAD) for _ in range(count)]
        _, not_done = wait(futures, timeout=TASK_TIMEOUT)
        if not_done:
            raise SystemExit(f"{len(not_done)} of {count} tasks did not finish within {TASK_TIMEOUT:.0f}s")
        return [future.result() for future in futures]

    def run_one(self) -> bytes:
        return self.submit(PAYLOAD).result(TASK_TIMEOUT)


class DirectDriver(Driver):
    def __init__(self, floor: Floor | FlamepyCeiling) -> None:
        self.floor = floor

    def run_burst(self, count: int) -> list[bytes]:
        return self.floor.run_burst(count, PAYLOAD)

    def run_one(self) -> bytes:
        return self.floor.run_one(PAYLOAD)


class RayDriver(Driver):
    def __init__(self, ray: Any, actors: list[Any]) -> None:
        self.ray = ray
        self.actors = actors
        self._next = 0

    def run_burst(self, count: int) -> list[bytes]:
        n = len(self.actors)
        refs = [self.actors[i % n].run.remote(PAYLOAD) for i in range(count)]
        outputs: list[bytes] = self.ray.get(refs, timeout=TASK_TIMEOUT)
        return outputs

    def run_one(self) -> bytes:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        output: bytes = self.ray.get(actor.run.remote(PAYLOAD), timeout=TASK_TIMEOUT)
        return output


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) >= 2 else values[0]


def measure(
    driver: Driver, meter: CpuMeter, args: argparse.Namespace, check: Callable[[bytes], bool]
) -> tuple[float, list[float], dict[str, float]]:
    """(tasks/s, latencies in ms, CPU us per task by role) of the two workloads."""
    driver.run_burst(min(WARM_UP_TASKS, args.tasks))
    with meter:
        began = time.perf_counter()
        outputs = driver.run_burst(args.tasks)
        elapsed = time.perf_counter() - began
    wrong = sum(not check(output) for output in outputs)
    if len(outputs) != args.tasks or wrong:
        raise SystemExit(f"{wrong} of {args.tasks} outputs were wrong (or {len(outputs)} came back)")
    latencies = []
    for _ in range(args.latency_tasks):
        began = time.perf_counter()
        output = driver.run_one()
        latencies.append((time.perf_counter() - began) * 1000)
        if not check(output):
            raise SystemExit(f"a sequential task returned {output[:80]!r}")
    cpu = {role: seconds * 1e6 / args.tasks for role, seconds in meter.seconds_by_role().items()}
    return args.tasks / elapsed, latencies, cpu


def make_run(rate: float, latencies: list[float], cpu: dict[str, float]) -> Run:
    return Run(rate, statistics.median(latencies), p99(latencies), cpu)


def echoes(output: bytes) -> bool:
    return output == PAYLOAD


def is_flmping_reply(output: bytes) -> bool:
    try:
        reply = json.loads(output)
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get("duration_ms") == 0


def noop(data: bytes) -> bytes:
    return data


def run_pool(args: argparse.Namespace) -> Run:
    with ProcessPoolExecutor(args.executors) as pool:
        driver = FutureDriver(lambda data: pool.submit(noop, data))
        return make_run(*measure(driver, CpuMeter(os.getpid(), pool_role, include_root=False), args, echoes))


def run_direct(args: argparse.Namespace, make: Callable[[int], Floor | FlamepyCeiling], role: Labeler) -> Run:
    """A floor or ceiling: its processes are this one's children."""
    target = make(args.executors)
    try:
        return make_run(*measure(DirectDriver(target), CpuMeter(os.getpid(), role, include_root=False), args, echoes))
    finally:
        target.close()


class NoopActor:
    def run(self, data: bytes) -> bytes:
        return data


def ray_missing() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "skipped: ray not installed (pip install -e '.[bench]')"
    return None


class RayUnavailable(Exception):
    pass


@contextlib.contextmanager
def ray_runtime(actors: int) -> Iterator[tuple[Any, list[Any]]]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a benchmark
    ray: Any = importlib.import_module("ray")
    try:
        ray.init(num_cpus=max(2, actors), include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # any failure to start means no baseline, said plainly
        raise RayUnavailable(f"skipped: Ray did not start: {exc}") from exc
    try:
        actor_class = ray.remote(NoopActor)
        handles = [actor_class.remote() for _ in range(actors)]
        ray.get([handle.run.remote(PAYLOAD) for handle in handles], timeout=120)
        yield ray, handles
    finally:
        ray.shutdown()


def run_ray(args: argparse.Namespace, ray: Any, actors: list[Any]) -> Run:
    meter = CpuMeter(os.getpid(), ray_role, include_root=False)
    return make_run(*measure(RayDriver(ray, actors), meter, args, echoes))


# ---------------------------------------------------------------- Flame


def wait_for_port(cluster: FlameUp, timeout: float = 60.0) -> float:
    """Seconds from the spawn until ``flame up`` accepts connections.

    A TCP probe every 5 ms, so no gRPC reconnect backoff adds to the start-up time.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", cluster.port), timeout=1):
            return time.perf_counter() - cluster.spawned
        if cluster.process.poll() is not None:
            raise SystemExit(f"flame up exited with code {cluster.process.returncode} during start-up")
        if time.monotonic() > deadline:
            raise SystemExit(f"flame up did not listen within {timeout:.0f}s")
        time.sleep(0.005)


def wait_for_bound(conn: flame.Connection, session_id: str, executors: int, timeout: float = 60.0) -> None:
    """Until ``executors`` executors are bound to the session (so every service is up)."""
    deadline = time.monotonic() + timeout
    while True:
        bound = [e for e in conn.list_executors() if e.session_id == session_id and e.state == ExecutorState.BOUND]
        if len(bound) >= executors:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(bound)} of {executors} executors bound to the session within {timeout:.0f}s")
        time.sleep(0.05)


def bound_session(
    conn: flame.Connection, application: str, executors: int, check: Callable[[bytes], bool]
) -> tuple[flame.Session, float]:
    """A session whose first task came back right and whose executors are all bound, and the
    time.perf_counter() at which that first result arrived."""
    session = conn.create_session(application, min_instances=executors)
    first = session.run(PAYLOAD).result(TASK_TIMEOUT)
    first_done = time.perf_counter()
    if not check(first):
        raise SystemExit(f"the first task returned {first!r}")
    wait_for_bound(conn, session.id, executors)
    return session, first_done


def run_flame(args: argparse.Namespace, application: str, check: Callable[[bytes], bool]) -> Run:
    with flame_up(args.executors, args.storage) as cluster:
        listening_s = wait_for_port(cluster)
        with flame.connect(cluster.endpoint, timeout=30) as conn:
            if application == FLAMEPY_APPLICATION:
                spec = {"command": sys.executable, "arguments": [str(FLAMEPY_SERVICE)]}
                conn.register_application(application, spec)
            session, first_done = bound_session(conn, application, args.executors, check)
            first_result_s = first_done - cluster.spawned
            time.sleep(1.0)  # the measurement is of an idle cluster: let start-up work settle
            pss = idle_pss_by_role(cluster.process.pid)
            meter = CpuMeter(cluster.process.pid, flame_role)
            run = make_run(*measure(FutureDriver(session.run), meter, args, check))
            session.close()
    if "executor manager" not in run.cpu_us_per_task:  # the node runs inside flame up
        run.cpu_us_per_task = _rename(run.cpu_us_per_task, FLAME_UP, FLAME_UP_WITH_NODE)
        pss = _rename(pss, FLAME_UP, FLAME_UP_WITH_NODE)
    run.first_result_s, run.listening_s = first_result_s, listening_s
    run.idle_pss_mb, run.idle_pss_mb_by_role = sum(pss.values()), pss
    return run


def run_split(args: argparse.Namespace) -> Run:
    with flame_split(args.executors, args.storage) as cluster:
        cluster.wait_for_node()
        with flame.connect(cluster.endpoint, timeout=30) as conn:
            session, _ = bound_session(conn, "flmping", args.executors, is_flmping_reply)
            meter = CpuMeter(os.getpid(), split_role, include_root=False)
            run = make_run(*measure(FutureDriver(session.run), meter, args, is_flmping_reply))
            session.close()
    return run


def _rename(figures: dict[str, float], old: str, new: str) -> dict[str, float]:
    return {new if role == old else role: value for role, value in figures.items()}


def idle_pss_by_role(root: int) -> dict[str, float]:
    """PSS in MB of ``root``'s process tree, summed by role."""
    by_role: dict[str, float] = {}
    for proc in process_tree(root):
        role = flame_role(proc.depth, cmdline(proc.pid))
        by_role[role] = by_role.get(role, 0.0) + pss_kb(proc.pid) / 1024
    return dict(sorted(by_role.items(), key=lambda item: _role_order(item[0])))


# ---------------------------------------------------------------- the report


@dataclass
class System:
    key: str
    name: str
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    startup_note: str = ""

    def median(self, figure: str) -> float | None:
        values = [getattr(run, figure) for run in self.runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def cpu(self) -> dict[str, float]:
        """CPU us per task by role, the median of the runs."""
        return self._by_role([run.cpu_us_per_task for run in self.runs])

    def pss(self) -> dict[str, float]:
        """Idle PSS in MB by role, the median of the runs."""
        return self._by_role([run.idle_pss_mb_by_role for run in self.runs])

    @staticmethod
    def _by_role(runs: list[dict[str, float]]) -> dict[str, float]:
        roles = sorted({role for run in runs for role in run}, key=_role_order)
        return {role: statistics.median(run.get(role, 0.0) for run in runs) for role in roles}


ROLE_ORDER = ("flame up", "session manager", "executor manager", "service", "ray", "pool", "floor", "other", "client")


def _role_order(role: str) -> tuple[int, str]:
    rank = next((i for i, prefix in enumerate(ROLE_ORDER) if role.startswith(prefix)), len(ROLE_ORDER))
    return rank, role


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class Target:
    name: str
    value: float | None
    why_none: str  # why there is no value, if there is none
    limit: float
    at_least: bool  # value >= limit meets it (else value <= limit)
    unit: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def targets(systems: dict[str, System]) -> list[Target]:
    pool, ray, a, b, split = (systems[k] for k in ("pool", "ray", "flame", "flamepy", "split"))

    def versus(mine: System, figure: str, other: System) -> tuple[float | None, str]:
        return ratio(mine.median(figure), other.median(figure)), other.skipped or mine.skipped or ""

    cpu = a.cpu()
    session_manager = cpu.get(FLAME_UP, cpu.get(FLAME_UP_WITH_NODE)) if a.runs else None
    return [
        Target("(a) throughput vs ProcessPoolExecutor", *versus(a, "tasks_per_s", pool), 1.0, True, "x"),
        Target("(a) latency median vs Ray actors", *versus(a, "latency_median_ms", ray), 0.5, False, "x"),
        Target("(a) latency p99 vs Ray actors", *versus(a, "latency_p99_ms", ray), 1.0, False, "x"),
        Target("(a) session manager CPU per task", session_manager, a.skipped or "", 50.0, False, " us"),
        Target(
            "(a) split: session manager CPU per task",
            split.cpu().get(SPLIT_SESSION_MANAGER),
            split.skipped or "",
            50.0,
            False,
            " us",
        ),
        Target("(b) throughput vs Ray actors", *versus(b, "tasks_per_s", ray), 2.0, True, "x"),
        Target("(a) flame up to first result", a.median("first_result_s"), a.skipped or "", 0.5, False, " s"),
        Target("(a) idle PSS of flame up's processes", a.median("idle_pss_mb"), a.skipped or "", 80.0, False, " MB"),
    ]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_system(system: System) -> None:
    print(f"\n== {system.name}")
    if system.skipped:
        print(f"   {system.skipped}")
        return
    print(
        f"   throughput {_fmt(system.median('tasks_per_s'), ',.0f')} tasks/s"
        f"   latency median {_fmt(system.median('latency_median_ms'), '.2f')} ms"
        f"   p99 {_fmt(system.median('latency_p99_ms'), '.2f')} ms"
    )
    if system.median("first_result_s") is not None:
        print(
            f"   flame up to first result {_fmt(system.median('first_result_s'), '.2f')} s"
            f" (listening after {_fmt(system.median('listening_s'), '.2f')} s){system.startup_note}"
        )
        pss = ", ".join(f"{role} {mb:.1f}" for role, mb in system.pss().items())
        print(f"   idle PSS of flame up's processes {_fmt(system.median('idle_pss_mb'), '.1f')} MB ({pss})")
    cpu = system.cpu()
    print(f"   {'CPU per task, throughput phase':<44} {'us/task':>9}")
    for role, us in cpu.items():
        print(f"   {'  ' + role:<44} {us:>9.1f}")
    print(f"   {'  total':<44} {sum(cpu.values()):>9.1f}")


def print_summary(systems: dict[str, System]) -> None:
    width = max(len(s.name) for s in systems.values())
    print(f"\n{'system':<{width}} {'tasks/s':>9} {'median ms':>10} {'p99 ms':>8} {'CPU us/task':>12}")
    for system in systems.values():
        total = sum(system.cpu().values()) if system.runs else None
        print(
            f"{system.name:<{width}} {_fmt(system.median('tasks_per_s'), ',.0f'):>9}"
            f" {_fmt(system.median('latency_median_ms'), '.2f'):>10} {_fmt(system.median('latency_p99_ms'), '.2f'):>8}"
            f" {_fmt(total, '.0f'):>12}"
        )


UNIT_FORMAT = {"x": ".2f", " us": ".0f", " s": ".2f", " MB": ".1f"}


def print_targets(found: list[Target]) -> None:
    print("\ntargets (issue 8)")
    for target in found:
        limit = f"{'>=' if target.at_least else '<='} {target.limit:g}{target.unit}"
        if target.value is None:
            measured, verdict = "-", f"n/a ({target.why_none or 'not measured'})"
        else:
            measured = format(target.value, UNIT_FORMAT[target.unit]) + target.unit
            verdict = "met" if target.met else "MISSED"
        print(f"  {target.name:<40} {limit:>9}   measured {measured:>9}   {verdict}")


def print_floors(systems: dict[str, System]) -> None:
    """What the transport and flamepy's own server allow, beside the targets that depend on them."""
    floor = systems["grpc"].median("latency_median_ms")
    ray_latency = systems["ray"].median("latency_median_ms")
    if floor is not None:
        print(f"\nlatency median against the gRPC floor ({floor:.2f} ms: two chained grpc.aio round trips, no work)")
        for key in ("pool", "ray", "flame", "flamepy"):
            mine = systems[key].median("latency_median_ms")
            if mine is not None:
                print(f"  {systems[key].name:<56} {mine / floor:>6.2f}x")
        if ray_latency is not None:
            target = ray_latency / 2
            print(f"  the (a) latency target (0.5x Ray actors) is {target:.2f} ms, {target / floor:.2f}x the floor")
    ceiling = systems["ceiling"].median("tasks_per_s")
    ray_rate = systems["ray"].median("tasks_per_s")
    if ceiling is not None:
        print(f"\nFlame (b) against the flamepy ceiling ({ceiling:,.0f} tasks/s with nothing but the services)")
        b = systems["flamepy"].median("tasks_per_s")
        if b is not None:
            print(f"  {systems['flamepy'].name:<56} {b / ceiling:>6.2f}x")
        if ray_rate is not None:
            target = 2 * ray_rate
            print(f"  the (b) target (2x Ray actors) is {target:,.0f} tasks/s, {target / ceiling:.2f}x the ceiling")


def print_report(systems: dict[str, System], args: argparse.Namespace, load: tuple[float, float]) -> list[Target]:
    runs = f"median of {args.repeat} runs" if args.repeat > 1 else "1 run"
    print(f"\nNo-op tasks with {len(PAYLOAD)}-byte inputs on {os.cpu_count()} cores ({runs} per system)")
    print(f"  throughput: {args.tasks} tasks submitted at once; latency: {args.latency_tasks} tasks one after another")
    print(f"  Flame: flame up --executors {args.executors} --storage {args.storage}, a fresh cluster per run")
    print(
        f"  1-minute load average {load[0]:.2f} before, {load[1]:.2f} after (other work on the machine skews figures)"
    )
    for system in systems.values():
        print_system(system)
    print_summary(systems)
    found = targets(systems)
    print_targets(found)
    print_floors(systems)
    return found


def write_json(
    path: str, systems: dict[str, System], found: list[Target], args: argparse.Namespace, load: tuple[float, float]
) -> None:
    report = {
        "config": {
            "tasks": args.tasks,
            "latency_tasks": args.latency_tasks,
            "input_bytes": len(PAYLOAD),
            "executors": args.executors,
            "storage": args.storage,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "load_average_1m": {"before": load[0], "after": load[1]},
        },
        "systems": {
            key: {
                "name": s.name,
                "skipped": s.skipped,
                "median": {
                    **{f: s.median(f) for f in ("tasks_per_s", "latency_median_ms", "latency_p99_ms")},
                    **{f: s.median(f) for f in ("first_result_s", "listening_s", "idle_pss_mb")},
                    "idle_pss_mb_by_role": s.pss(),
                    "cpu_us_per_task": s.cpu(),
                    "cpu_us_per_task_total": sum(s.cpu().values()) if s.runs else None,
                },
                "runs": [asdict(run) for run in s.runs],
            }
            for key, s in systems.items()
        },
        "targets": [
            {"name": t.name, "measured": t.value, "limit": t.limit, "at_least": t.at_least, "met": t.met} for t in found
        ],
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------- main


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


SYSTEM_KEYS = ("pool", "ray", "flame", "flamepy", "split", "grpc", "ceiling")


def systems_list(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEM_KEYS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(SYSTEM_KEYS)}, got {text!r}")
    return keys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="No-op task throughput, latency and CPU per task: Flame vs ProcessPoolExecutor and Ray actors.",
        epilog="Wrap runs in `flock /tmp/flame-bench.lock ...` on a shared machine so measurements never overlap.",
    )
    parser.add_argument("--tasks", type=positive, default=10_000, help="tasks submitted at once (default 10000)")
    parser.add_argument("--latency-tasks", type=positive, default=200, help="sequential tasks (default 200)")
    parser.add_argument("--executors", type=positive, default=2, help="executors / pool workers / actors (default 2)")
    parser.add_argument("--storage", default="sqlite://flame.db", help="flame up's storage (default sqlite)")
    parser.add_argument("--repeat", type=positive, default=1, help="runs of each system; medians reported (default 1)")
    parser.add_argument(
        "--systems",
        type=systems_list,
        default=list(SYSTEM_KEYS),
        help=f"which systems to run, comma-separated (default {','.join(SYSTEM_KEYS)})",
    )
    parser.add_argument("--skip-ray", action="store_true", help="do not run the Ray baseline")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args(argv)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        parser.error(f"--json: the folder of {args.json!r} does not exist")
    return args


def run_all(args: argparse.Namespace) -> dict[str, System]:
    n = args.executors
    systems = {
        "pool": System("pool", f"ProcessPoolExecutor({n})"),
        "ray": System("ray", f"Ray actors ({n}, round-robin)"),
        "flame": System("flame", "Flame (a): our client + our SDK service (flmping)"),
        "flamepy": System("flamepy", "Flame (b): our client + unmodified flamepy 0.6.0 service"),
        "split": System("split", "Flame (a) split: session manager, executor manager apart"),
        "grpc": System("grpc", f"gRPC floor: client -> relay -> {n} echo processes"),
        "ceiling": System("ceiling", f"flamepy ceiling: {n} flamepy services called directly"),
    }
    systems["flamepy"].startup_note = " (registering the application included)"
    for key, system in systems.items():
        if key not in args.systems:
            system.skipped = "skipped: not in --systems"
    if args.skip_ray:
        systems["ray"].skipped = "skipped: --skip-ray"
    systems["ray"].skipped = systems["ray"].skipped or ray_missing()
    if importlib.util.find_spec("flamepy") is None:
        systems["flamepy"].skipped = "skipped: flamepy not installed (pip install -e '.[dev]')"

    # The pool forks, so it goes first; Ray last, so none of its processes run beside Flame's.
    for key, runner in (
        ("pool", run_pool),
        ("flame", lambda a: run_flame(a, "flmping", is_flmping_reply)),
        ("flamepy", lambda a: run_flame(a, FLAMEPY_APPLICATION, echoes)),
        ("split", run_split),
        ("grpc", lambda a: run_direct(a, Floor, floor_role)),
        ("ceiling", lambda a: run_direct(a, FlamepyCeiling, ceiling_role)),
    ):
        if not systems[key].skipped:
            for i in range(args.repeat):
                print(f"running {systems[key].name} ({i + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                systems[key].runs.append(runner(args))
    if not systems["ray"].skipped:
        run_ray_system(systems["ray"], args)
    return systems


def run_ray_system(system: System, args: argparse.Namespace) -> None:
    try:
        with ray_runtime(args.executors) as (ray, actors):
            system.name = f"Ray {ray.__version__} actors ({args.executors}, round-robin)"
            for i in range(args.repeat):
                print(f"running {system.name} ({i + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                system.runs.append(run_ray(args, ray, actors))
    except RayUnavailable as exc:
        system.skipped = str(exc)


def compile_flame() -> None:
    """Compile flame's bytecode first, as installing a wheel does: flame up's start-up is then what
    an installed package costs, not a compile of every module of an editable checkout on every
    start (which PYTHONDONTWRITEBYTECODE, set on some machines, would otherwise make the case)."""
    compileall.compile_dir(str(Path(flame.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    compile_flame()
    load_before = os.getloadavg()[0]
    try:
        systems = run_all(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    load = (load_before, os.getloadavg()[0])
    found = print_report(systems, args, load)
    if args.json:
        write_json(args.json, systems, found, args, load)


if __name__ == "__main__":
    main()
