"""The session manager's memory per pending task, and a restart with that many pending.

Starts `flame session-manager` alone (its own process, sqlite storage in a temporary dir, no
executor manager, so every task stays Pending) and submits --tasks tasks of 16 bytes through our
SDK in bursts of --burst. Prints the session manager's RSS and PSS before and after and the
bytes per pending task; then stops it (SIGTERM), starts it again on the same database and prints
how long recovery took (spawn to the first answered call) and the RSS with every task loaded
back. Medians are not needed: the figure is a size, the same from run to run within a few %.

Usage: python benchmarks/pending_memory.py [--tasks 1000000] [--burst 50000]
Run it alone: flock /tmp/flame-bench.lock python benchmarks/pending_memory.py
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import yaml
from _flame_up import free_port
from _procfs import pss_kb

import flame

PAYLOAD = b" " * 16


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"process {pid} is gone")


def start(config: Path, endpoint: str) -> tuple[subprocess.Popen[bytes], float]:
    """The session manager and the seconds from its spawn until it answers a call."""
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "flame", "--log-level", "WARNING", "session-manager", "--config", str(config)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while True:
        try:
            with flame.connect(endpoint, timeout=1) as conn:
                conn.list_applications()
            return process, time.perf_counter() - began
        except flame.Unavailable:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the session manager did not start") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def settle(pid: int, read: Callable[[int], int]) -> int:
    """``read(pid)`` once it stops growing (the last commits and the garbage collector are done)."""
    last = read(pid)
    for _ in range(40):
        time.sleep(0.25)
        now = read(pid)
        if abs(now - last) < 256:
            return now
        last = now
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="pending tasks to create (default 1,000,000)")
    parser.add_argument("--burst", type=int, default=50_000, help="tasks submitted per burst (default 50,000)")
    args = parser.parse_args()
    if args.tasks < 1 or args.burst < 1:
        parser.error("--tasks and --burst must be at least 1")

    with tempfile.TemporaryDirectory(prefix="flame-pending-") as work:
        endpoint = f"http://127.0.0.1:{free_port()}"
        config = Path(work) / "flame-cluster.yaml"
        section = {"endpoint": endpoint, "storage": f"sqlite:///{work}/flame.db", "data_dir": work}
        config.write_text(yaml.safe_dump({"cluster": {**section, "dashboard": {"enabled": False}}}))
        manager, _ = start(config, endpoint)
        try:
            with flame.connect(endpoint, timeout=60) as conn:
                session = conn.create_session("flmping")
                before_rss, before_pss = settle(manager.pid, rss_kb), pss_kb(manager.pid)
                began = time.perf_counter()
                futures: list[Future[bytes]] = []  # held: they stay pending until the end
                while len(futures) < args.tasks:
                    n = min(args.burst, args.tasks - len(futures))
                    futures.extend(session.run(PAYLOAD) for _ in range(n))
                    print(f"\r  submitted {len(futures):,} / {args.tasks:,}", end="", flush=True)
                counted = conn.get_session(session.id)
                while counted.pending < args.tasks:
                    time.sleep(0.2)
                    counted = conn.get_session(session.id)
                elapsed = time.perf_counter() - began
                after_rss, after_pss = settle(manager.pid, rss_kb), pss_kb(manager.pid)
                print()
            stop(manager)
            restarted, recovery_s = start(config, endpoint)
            loaded_rss = settle(restarted.pid, rss_kb)
            with flame.connect(endpoint, timeout=60) as conn:
                pending_after = conn.get_session(session.id).pending
            stop(restarted)
        finally:
            if manager.poll() is None:
                stop(manager)

    per_task = (after_rss - before_rss) * 1024 / args.tasks
    print(f"{args.tasks:,} pending tasks of {len(PAYLOAD)} bytes, sqlite, in {elapsed:.1f} s")
    print(f"  session manager RSS {before_rss / 1024:8.1f} MB before, {after_rss / 1024:8.1f} MB with them pending")
    print(f"  session manager PSS {before_pss / 1024:8.1f} MB before, {after_pss / 1024:8.1f} MB with them pending")
    print(f"  bytes per pending task (RSS growth / tasks): {per_task:,.0f}")
    print(f"  restart: answered after {recovery_s:.1f} s, RSS {loaded_rss / 1024:.1f} MB, {pending_after:,} pending")


if __name__ == "__main__":
    main()
