"""What the dashboard and /metrics cost the session manager, per task: on with pages open vs. off.

Runs the throughput workload (no-op flmping tasks submitted at once, one client) against two
`flame up` clusters in the same run, alternating rounds: one with ``cluster.dashboard.enabled:
false``, one with the dashboard on, two live pages open on it (the overview's and the session's
server-sent event streams, read as a browser's EventSource reads them, by a process of their
own) and /metrics scraped every second. The session manager's CPU (user + system time of the
`flame up` process, which is the session manager: the executor manager is a child process) is
read from /proc around each round's tasks. Prints the median CPU microseconds per task of each
and the ratio (target: under 1.05), and the CPU the dashboard's own code took by its own account
(flame_dashboard_cpu_seconds_total, thread CPU time around each of its entry points): an A/B
ratio on a shared 2-core machine moves by 10% from round to round, the account does not.
Usage: python benchmarks/dashboard_cost.py [--tasks 10000] [--rounds 21] [--no-pages] [--storage memory]
Run it alone: flock /tmp/flame-bench.lock python benchmarks/dashboard_cost.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path

from _flame_up import FlameUp, flame_up

import flame

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@contextlib.contextmanager
def cluster_up(executors: int, dashboard: bool, storage: str) -> Iterator[FlameUp]:
    with flame_up(executors, storage, dashboard=dashboard) as cluster:
        cluster.wait_for_node()
        yield cluster


class Watchers:
    """Two open pages (their event streams) and a Prometheus-like scraper, in threads."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.events = 0
        self.lock = threading.Lock()
        self.scrapes = 0
        topics = ("overview", f"session:{session_id}")
        self.threads = [threading.Thread(target=self._stream, args=(t,), daemon=True) for t in topics]
        self.threads.append(threading.Thread(target=self._scrape, daemon=True))

    def run(self) -> None:
        for thread in self.threads:
            thread.start()
        self.stop.wait()

    def _stream(self, topic: str) -> None:
        try:
            with urllib.request.urlopen(f"{self.url}events?topic={topic}", timeout=30) as stream:
                for line in stream:
                    if line.startswith(b"data: "):
                        with self.lock:
                            self.events += 1
                            if self.events == 2:
                                print("live", flush=True)  # both pages have their first payload
            reason = "the server ended it"
        except OSError as exc:
            reason = str(exc)
        if not self.stop.is_set():
            print(f"the {topic} event stream stopped: {reason}", flush=True)

    def _scrape(self) -> None:
        while not self.stop.wait(1.0):
            with urllib.request.urlopen(self.url + "metrics", timeout=10) as response:
                response.read()
            self.scrapes += 1


@contextlib.contextmanager
def watching(url: str, session_id: str) -> Iterator[None]:
    """The watchers in a process of their own, so that they do not slow the submitting client."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--watch", url, session_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().strip() if ready else "no event within 60 s"
        if line != "live":
            raise SystemExit(f"the dashboard's event streams did not start: {line}")
        yield
    finally:
        process.terminate()
        process.wait(10)


def dashboard_cpu(cluster: FlameUp) -> float:
    """The dashboard's own account of the CPU it took (flame_dashboard_cpu_seconds_total)."""
    if cluster.dashboard is None:
        return 0.0
    with urllib.request.urlopen(cluster.dashboard + "metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("flame_dashboard_cpu_seconds_total "):
                return float(line.split()[1])
    raise SystemExit("the dashboard's /metrics has no flame_dashboard_cpu_seconds_total")


@dataclass
class Round:
    cpu_us: float  # session manager CPU per task
    own_us: float  # of which the dashboard's own code, by its own account
    rate: float  # tasks/s


def run_round(cluster: FlameUp, tasks: int, pages: bool = True) -> Round:
    """Session manager CPU per task (and the dashboard's share) for one batch of no-op tasks."""
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping", min_instances=2)
        for future in [session.run(b"") for _ in range(200)]:  # warm up: executors bound
            future.result()
        with contextlib.ExitStack() as stack:
            if cluster.dashboard and pages:
                stack.enter_context(watching(cluster.dashboard, session.id))
            own_before = dashboard_cpu(cluster)
            before, began = cpu_seconds(cluster.pid), time.perf_counter()
            futures = [session.run(b"") for _ in range(tasks)]
            _, not_done = wait(futures, timeout=600)
            assert not not_done, f"{len(not_done)} tasks did not finish"
            spent, elapsed = cpu_seconds(cluster.pid) - before, time.perf_counter() - began
            own = dashboard_cpu(cluster) - own_before
        session.close()
    return Round(spent / tasks * 1e6, own / tasks * 1e6, tasks / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per round (default 10000)")
    parser.add_argument("--rounds", type=int, default=21, help="rounds of each, alternating (default 21)")
    parser.add_argument(
        "--no-pages", action="store_true", help="dashboard on but no page open and no scraping (to split the cost)"
    )
    parser.add_argument(
        "--storage", default="sqlite://flame.db", help="flame up's storage (default sqlite://flame.db; or memory)"
    )
    parser.add_argument("--watch", nargs=2, metavar=("URL", "SESSION"), help=argparse.SUPPRESS)
    parser.add_argument("--executors", type=int, default=2, help="executors of the local node (default 2)")
    args = parser.parse_args()
    if args.watch:
        Watchers(*args.watch).run()
        return
    results: dict[bool, list[Round]] = {False: [], True: []}
    off_cluster, on_cluster = (
        cluster_up(args.executors, False, args.storage),
        cluster_up(args.executors, True, args.storage),
    )
    with off_cluster as off, on_cluster as on:
        for _ in range(args.rounds):
            for dashboard, cluster in ((False, off), (True, on)):
                results[dashboard].append(run_round(cluster, args.tasks, not args.no_pages))
    print(
        f"{args.tasks} no-op tasks a round, {args.rounds} rounds each, {args.executors} executors,"
        f" storage {args.storage}"
    )
    medians = {}
    on_label = "dashboard on, no page open" if args.no_pages else "dashboard on, 2 pages open, /metrics 1/s"
    for dashboard, label in ((False, "dashboard disabled"), (True, on_label)):
        rounds = results[dashboard]
        medians[dashboard] = statistics.median(r.cpu_us for r in rounds)
        shown = ", ".join(f"{r.cpu_us:.0f}" for r in rounds)
        rate = statistics.median(r.rate for r in rounds)
        print(
            f"{label:<42} session manager CPU {medians[dashboard]:6.1f} us/task (rounds: {shown})"
            f"   {rate:6,.0f} tasks/s"
        )
    own = statistics.median(r.own_us for r in results[True])
    if not (medians[True] and medians[False]):  # CPU time comes in 10 ms ticks: too few tasks to count
        print("ratio on/off: n/a (no CPU tick counted; run more tasks)")
        return
    paired = [on.cpu_us / off.cpu_us for off, on in zip(results[False], results[True], strict=True) if off.cpu_us]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    print(f"ratio on/off of the medians: {medians[True] / medians[False]:.3f} (target < 1.05)")
    print(
        f"ratio on/off, median of {len(paired)} neighbouring pairs: {statistics.median(paired):.3f}"
        f" (quartiles {quartiles[0]:.3f} .. {quartiles[2]:.3f})"
    )
    print(
        f"the dashboard's own code, by its account: {own:.1f} us/task = "
        f"{100 * own / medians[True]:.1f}% of the session manager's CPU per task"
    )


if __name__ == "__main__":
    main()
