"""Elasticity demo, the client: two sessions of different priority share the cluster.

python examples/elastic/elastic_client.py --local     # all-in-one cluster with 4 executors for the run
python examples/elastic/elastic_client.py             # uses FLAME_ENDPOINT (e.g. after `flame up`)

A low-priority session starts with a large backlog of short sleep tasks and takes the cluster.
After a moment a high-priority session arrives with a backlog of its own. Twice a second the
client samples how many executors each session holds (``list_executors``: each executor names
its session) and each session's task counters, and prints one row of a timeline. It ends with a
summary of what it observed; it asserts nothing, so what it prints is what the scheduler did.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import flame
from flame.types import ExecutorState

SERVICE = Path(__file__).with_name("elastic_service.py").resolve()
APPLICATION = "elastic-sleep"
HELD = (ExecutorState.BINDING, ExecutorState.BOUND)


@dataclass(frozen=True)
class Counts:
    executors: int
    pending: int
    running: int
    done: int


@dataclass(frozen=True)
class Sample:
    t: float
    low: Counts
    high: Counts | None  # None before the high-priority session exists


@dataclass
class Workload:
    """One session and the futures of the tasks submitted to it."""

    session: flame.Session
    futures: list[concurrent.futures.Future[bytes]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def counts(self, held: Counter[str | None]) -> Counts:
        self.session.refresh()
        s = self.session
        return Counts(held[s.id], s.pending, s.running, s.succeed + s.failed + s.cancelled)


def register(conn: flame.Connection) -> None:
    spec = {"command": sys.executable, "arguments": [str(SERVICE)], "description": "Sleeps; elasticity demo"}
    try:
        conn.register_application(APPLICATION, spec)
    except flame.AlreadyExists:
        conn.update_application(APPLICATION, spec)


def start(conn: flame.Connection, priority: int, tasks: int, args: argparse.Namespace) -> Workload:
    """Create a session and submit its whole backlog."""
    session = conn.create_session(APPLICATION, priority=priority, resreq=args.resreq)
    task = json.dumps({"ms": args.task_ms}).encode()
    return Workload(session, [session.run(task) for _ in range(tasks)])


def _cell(counts: Counts | None) -> str:
    if counts is None:
        return f"{'-':>4} {'-':>7} {'-':>7} {'-':>5}"
    return f"{counts.executors:>4} {counts.pending:>7} {counts.running:>7} {counts.done:>5}"


def print_header(args: argparse.Namespace) -> None:
    low = f"low priority {args.low_priority} ({args.low_tasks} tasks)"
    high = f"high priority {args.high_priority} ({args.high_tasks} tasks)"
    print(f"each task sleeps {args.task_ms} ms; 'running' counts tasks handed to executors")
    print(f"{'time':>6} | {low:<26} | {high:<26}")
    print(f"{'(s)':>6} | {'exec pending running  done':<26} | {'exec pending running  done':<26}")


def timeline(conn: flame.Connection, args: argparse.Namespace) -> tuple[list[Sample], Workload, Workload | None]:
    """Run both workloads, printing a sample every ``--interval`` seconds until both are done."""
    print_header(args)
    t0 = time.monotonic()
    low = start(conn, args.low_priority, args.low_tasks, args)
    high: Workload | None = None
    samples: list[Sample] = []
    tick = 0
    while True:
        held = Counter(e.session_id for e in conn.list_executors() if e.state in HELD)
        now = time.monotonic() - t0
        if high is None and now >= args.delay and held[low.session.id] > 0:
            high = start(conn, args.high_priority, args.high_tasks, args)
            print(f"{now:>6.1f} | {'':<26} | high-priority session arrives")
        finished = high is not None and low.done and high.done  # before sampling, so the last row shows it
        sample = Sample(now, low.counts(held), high.counts(held) if high else None)
        samples.append(sample)
        print(f"{now:>6.1f} | {_cell(sample.low):<26} | {_cell(sample.high):<26}", flush=True)
        if finished:
            break
        if now > args.timeout:
            print(f"stopped sampling after {args.timeout:.0f}s with tasks still outstanding")
            break
        tick += 1
        time.sleep(max(0.0, t0 + tick * args.interval - time.monotonic()))
    low.session.close()
    if high is not None:
        high.session.close()
    return samples, low, high


def summarize(samples: Sequence[Sample], high: Workload | None) -> None:
    """Print what the timeline shows, in words."""
    print("observed:")
    if high is None:
        print("  the high-priority session never started (the low-priority one never held an executor)")
        return
    arrival = next(s for s in samples if s.high is not None)
    print(f"  high-priority session arrived at {arrival.t:.1f}s; low-priority pending then: {arrival.low.pending}")
    first = next((s for s in samples if s.high is not None and s.high.executors > 0), None)
    if first is None:
        print("  the high-priority session never held an executor while sampled")
    else:
        print(
            f"  high-priority session first held executors at {first.t:.1f}s "
            f"({first.t - arrival.t:.1f}s after arriving; low-priority pending then: {first.low.pending})"
        )
    contended = [s for s in samples if s.high is not None and s.low.pending > 0]
    most = max((s.high.executors for s in contended if s.high is not None), default=0)
    print(
        f"  high-priority executors while the low-priority session had a backlog: max {most} ({len(contended)} samples)"
    )
    total = len(high.futures)
    finished = next((s for s in samples if s.high is not None and s.high.done >= total), None)
    if finished is None:
        print("  the high-priority session did not finish while sampled")
        return
    after = [s for s in samples if s.t > finished.t]
    print(f"  high-priority session finished by {finished.t:.1f}s; low-priority pending then: {finished.low.pending}")
    if finished.low.pending == 0:
        print("  low-priority executors after that: none needed (its backlog was already gone)")
    else:
        regrown = max((s.low.executors for s in after), default=0)
        print(f"  low-priority executors after that: max {regrown}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Two sessions of different priority sharing a Flame cluster.")
    parser.add_argument("--low-tasks", type=int, default=120, help="low-priority backlog (default 120)")
    parser.add_argument("--high-tasks", type=int, default=40, help="high-priority backlog (default 40)")
    parser.add_argument("--task-ms", type=int, default=200, help="how long each task sleeps (default 200)")
    parser.add_argument("--low-priority", type=int, default=1, help="default 1")
    parser.add_argument("--high-priority", type=int, default=10, help="default 10")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before the high-priority session arrives")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="stop sampling after this long (default 300)")
    parser.add_argument(
        "--resreq",
        default="cpu=0,mem=256m",
        help="each executor's resources (default cpu=0,mem=256m: a sleeping task needs no core, "
        "so the node's executor slots, not its cores, bound the executor count)",
    )
    parser.add_argument("--local", action="store_true", help="start an all-in-one cluster for this run")
    parser.add_argument("--executors", type=int, default=4, help="executors of the --local cluster (default 4)")
    parser.add_argument("--endpoint", help="cluster endpoint (default: FLAME_ENDPOINT or http://127.0.0.1:8080)")
    args = parser.parse_args(argv)
    for name in ("low_tasks", "high_tasks", "executors"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.interval <= 0:
        parser.error(f"--interval must be positive, got {args.interval}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        endpoint = args.endpoint
        if args.local:
            from flame.testing import LocalCluster

            print(f"starting an all-in-one Flame cluster with {args.executors} executors ...", flush=True)
            endpoint = stack.enter_context(LocalCluster(executors=args.executors)).endpoint
        conn = stack.enter_context(flame.connect(endpoint))
        register(conn)
        samples, _, high = timeline(conn, args)
    summarize(samples, high)
    return 0


if __name__ == "__main__":
    sys.exit(main())
