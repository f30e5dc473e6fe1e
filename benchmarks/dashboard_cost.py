"""What the dashboard and /metrics cost the session manager, per task: on with pages open vs. off.

Runs the throughput workload (no-op flmping tasks submitted at once, one client) against two
`flame up` clusters in the same run, alternating rounds: one with ``cluster.dashboard.enabled:
false``, one with the dashboard on, two live pages open on it (the overview's and the session's
server-sent event streams, read as a browser's EventSource reads them) and /metrics scraped
every second. The session manager's CPU (user + system time of the `flame up` process, which
is the session manager: the executor manager is a child process) is read from /proc around each
round's tasks. Prints the median CPU microseconds per task of each and the ratio; the target is
under 1.05. Usage: python benchmarks/dashboard_cost.py [--tasks 20000] [--rounds 3]
Run it alone: flock /tmp/flame-bench.lock python benchmarks/dashboard_cost.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path

import flame

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@dataclass
class Cluster:
    endpoint: str
    pid: int
    dashboard: str | None


@contextlib.contextmanager
def flame_up(executors: int, dashboard: bool) -> Iterator[Cluster]:
    endpoint = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flame-bench-") as data_dir:
        config = Path(data_dir) / "flame-cluster.yaml"
        config.write_text(f"cluster:\n  dashboard:\n    enabled: {str(dashboard).lower()}\n    port: {port}\n")
        cmd = [sys.executable, "-m", "flame", "--log-level", "WARNING", "up", "--config", str(config)]
        cmd += ["--endpoint", endpoint, "--data-dir", data_dir, "--storage", "sqlite://flame.db"]
        process = subprocess.Popen([*cmd, "--executors", str(executors)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(flame.Unavailable), flame.connect(endpoint, timeout=1) as conn:
                    if conn.list_nodes():
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("flame up did not start")
                time.sleep(0.1)
            yield Cluster(endpoint, process.pid, f"http://127.0.0.1:{port}/" if dashboard else None)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)


class Watchers:
    """Two open pages (their event streams) and a Prometheus-like scraper, in threads."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.events = 0
        self.scrapes = 0
        topics = ("overview", f"session:{session_id}")
        self.threads = [threading.Thread(target=self._stream, args=(t,), daemon=True) for t in topics]
        self.threads.append(threading.Thread(target=self._scrape, daemon=True))

    def __enter__(self) -> Watchers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    def _stream(self, topic: str) -> None:
        with urllib.request.urlopen(f"{self.url}events?topic={topic}", timeout=30) as stream:
            for line in stream:
                if self.stop.is_set():
                    return
                if line.startswith(b"data: "):
                    self.events += 1

    def _scrape(self) -> None:
        while not self.stop.wait(1.0):
            with urllib.request.urlopen(self.url + "metrics", timeout=10) as response:
                response.read()
            self.scrapes += 1


def round_cpu_per_task(cluster: Cluster, tasks: int) -> tuple[float, float]:
    """(session manager CPU microseconds per task, tasks/s) for one batch of no-op tasks."""
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping", min_instances=2)
        for future in [session.run(b"") for _ in range(200)]:  # warm up: executors bound
            future.result()
        with contextlib.ExitStack() as stack:
            if cluster.dashboard:
                watchers = stack.enter_context(Watchers(cluster.dashboard, session.id))
                deadline = time.monotonic() + 10
                while watchers.events < 2 and time.monotonic() < deadline:  # both pages are live
                    time.sleep(0.05)
            before, start = cpu_seconds(cluster.pid), time.perf_counter()
            futures = [session.run(b"") for _ in range(tasks)]
            _, not_done = wait(futures, timeout=600)
            assert not not_done, f"{len(not_done)} tasks did not finish"
            spent, elapsed = cpu_seconds(cluster.pid) - before, time.perf_counter() - start
        session.close()
    return spent / tasks * 1e6, tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating (default 3)")
    parser.add_argument("--executors", type=int, default=2, help="executors of the local node (default 2)")
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with flame_up(args.executors, False) as off, flame_up(args.executors, True) as on:
        for _ in range(args.rounds):
            for dashboard, cluster in ((False, off), (True, on)):
                results[dashboard].append(round_cpu_per_task(cluster, args.tasks))
    print(f"{args.tasks} no-op tasks a round, {args.rounds} rounds each, {args.executors} executors, sqlite")
    medians = {}
    for dashboard, label in ((False, "dashboard disabled"), (True, "dashboard on, 2 pages open, /metrics 1/s")):
        cpu = [c for c, _ in results[dashboard]]
        rate = [r for _, r in results[dashboard]]
        medians[dashboard] = statistics.median(cpu)
        shown = ", ".join(f"{c:.1f}" for c in cpu)
        print(
            f"{label:<42} session manager CPU {medians[dashboard]:6.1f} us/task (rounds: {shown})"
            f"   {statistics.median(rate):8,.0f} tasks/s"
        )
    print(f"ratio on/off: {medians[True] / medians[False]:.3f} (target < 1.05)")


if __name__ == "__main__":
    main()
