"""Throughput and latency of no-op tasks: Flame all-in-one vs. ProcessPoolExecutor(2).

Starts an all-in-one cluster (session manager with SQLite storage, a local executor
manager with N executors running the built-in flmping service), then from one client:
- submits --tasks no-op tasks at once and waits for all (tasks/s);
- runs --latency-tasks tasks one after another (median and p99 round trip).
The same two figures are measured for concurrent.futures.ProcessPoolExecutor(2) in the
same run, and the ratio is printed. Usage: python benchmarks/throughput.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait

import flame


def noop(data: bytes) -> bytes:
    return data


def measure(submit: Callable[[bytes], Future[bytes]], tasks: int, latency_tasks: int) -> tuple[float, list[float]]:
    for future in [submit(b"") for _ in range(min(100, tasks))]:  # warm up
        future.result()
    start = time.perf_counter()
    futures = [submit(b"") for _ in range(tasks)]
    _, not_done = wait(futures, timeout=600)
    assert not not_done, f"{len(not_done)} tasks did not finish"
    for future in futures:
        future.result()
    rate = tasks / (time.perf_counter() - start)
    latencies = []
    for _ in range(latency_tasks):
        began = time.perf_counter()
        submit(b"").result()
        latencies.append((time.perf_counter() - began) * 1000)
    return rate, latencies


@contextlib.contextmanager
def flame_up(executors: int, storage: str) -> Iterator[str]:
    """Run `flame up` (the real all-in-one: its own process) and yield its endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flame-bench-") as data_dir:
        args = ["up", "--endpoint", endpoint, "--data-dir", data_dir, "--storage", storage]
        cmd = [sys.executable, "-m", "flame", "--log-level", "WARNING", *args, "--executors", str(executors)]
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with flame.connect(endpoint, timeout=1) as conn:
                        if conn.list_nodes():
                            break
                except flame.Unavailable:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("flame up did not start")
                time.sleep(0.1)
            yield endpoint
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def report(name: str, rate: float, latencies: list[float]) -> None:
    print(
        f"{name:<28} {rate:>10,.0f} tasks/s   latency median {statistics.median(latencies):7.2f} ms"
        f"   p99 {p99(latencies):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the throughput run (default 10000)")
    parser.add_argument("--latency-tasks", type=int, default=300, help="sequential tasks for latency (default 300)")
    parser.add_argument("--executors", type=int, default=2, help="executors of the local node (default 2)")
    parser.add_argument("--storage", default="sqlite://flame.db", help="storage of the cluster (default sqlite)")
    args = parser.parse_args()

    with ProcessPoolExecutor(2) as pool:
        base_rate, base_lat = measure(lambda data: pool.submit(noop, data), args.tasks, args.latency_tasks)

    with flame_up(args.executors, args.storage) as endpoint, flame.connect(endpoint) as conn:
        session = conn.create_session("flmping", min_instances=args.executors)
        rate, lat = measure(session.run, args.tasks, args.latency_tasks)
        session.close()

    print(f"{args.tasks} no-op tasks, {args.latency_tasks} sequential tasks for latency")
    report("ProcessPoolExecutor(2)", base_rate, base_lat)
    report(f"Flame all-in-one ({args.executors} exec)", rate, lat)
    print(
        f"ratio flame/pool: throughput {rate / base_rate:.3f}x, "
        f"median latency {statistics.median(lat) / statistics.median(base_lat):.1f}x"
    )


if __name__ == "__main__":
    main()
