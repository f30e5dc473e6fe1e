"""Chaos run: tasks keep their promise while services, the executor manager and the
session manager are killed at random.

Starts a session manager (SQLite) and an executor manager as separate processes, submits
--tasks tasks from one client (our SDK), then SIGKILLs a random victim every --interval
seconds (a service process, the executor manager, or the session manager; the managers are
restarted at once) until every task is done. Checks that every task Succeeded with its
correct output and reports how many tasks ran more than once.

    python benchmarks/chaos.py --tasks 10000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path

import flame

SERVICE = """
    import hashlib, random, time
    import flame

    class Digest(flame.FlameService):
        def on_session_enter(self, context):
            pass

        def on_task_invoke(self, context):
            time.sleep(random.random() * 0.004)
            return hashlib.sha256(context.input).hexdigest().encode()

        def on_session_leave(self):
            pass

    flame.run(Digest())
"""


def expected(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


@dataclass
class Report:
    tasks: int
    succeeded: int = 0
    wrong: int = 0
    failed: list[str] = field(default_factory=list)
    ran_more_than_once: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        kills = ", ".join(f"{name} x{count}" for name, count in sorted(self.kills.items())) or "none"
        return [
            f"tasks: {self.tasks}, succeeded with the right output: {self.succeeded}, wrong output: {self.wrong}, "
            f"failed: {len(self.failed)}",
            f"kills: {kills}",
            f"tasks that ran more than once: {self.ran_more_than_once}",
            f"time: {self.seconds:.1f}s",
        ]


class Cluster:
    """A session manager and an executor manager as `flame` processes, restartable."""

    def __init__(self, root: Path, executors: int) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.root = root
        self.endpoint = f"http://127.0.0.1:{port}"
        self.config = root / "flame-cluster.yaml"
        self.config.write_text(
            f"cluster:\n  endpoint: {self.endpoint}\n  storage: sqlite://flame.db\n  data_dir: {root / 'state'}\n"
            "  schedule_interval: 100\n  executors:\n    max_task_attempts: 50\n    max_bind_failures: 1000\n"
            f"executor_manager:\n  session_manager: {self.endpoint}\n  node_name: chaos-node\n"
            f"  max_executors: {executors}\n  capacity: cpu={executors},mem={executors}g\n"
            f"  work_dir: {root / 'work'}\n  stop_grace: 1\n"
        )
        self.log = open(root / "cluster.log", "ab")  # noqa: SIM115 - closed in stop()
        self.sm = self._start("session-manager")
        self.em = self._start("executor-manager")

    def _start(self, role: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "flame", "--log-level", "WARNING", role, "--config", str(self.config)]
        return subprocess.Popen(cmd, stdout=self.log, stderr=self.log)

    def kill_session_manager(self) -> None:
        self.sm.send_signal(signal.SIGKILL)
        self.sm.wait()
        self.sm = self._start("session-manager")

    def kill_executor_manager(self) -> None:
        self.em.send_signal(signal.SIGKILL)
        self.em.wait()
        self.em = self._start("executor-manager")

    def kill_a_service(self) -> bool:
        pids = []
        for path in (self.root / "work" / "pids").glob("*.pid"):
            try:
                pids.append(int(path.read_text(errors="replace").split("\n")[0]))
            except (OSError, ValueError):
                continue
        if not pids:
            return False
        try:
            os.kill(random.choice(pids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        for process in (self.em, self.sm):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.log.close()


def _connect(endpoint: str, timeout: float = 60) -> flame.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return flame.connect(endpoint, timeout=2)
        except flame.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _accepted(conn: flame.Connection, session_id: str) -> int:
    info = conn.get_session(session_id)
    return info.pending + info.running + info.succeed + info.failed


def _kill_loop(cluster: Cluster, report: Report, stop: threading.Event, interval: float, rng: random.Random) -> None:
    while not stop.wait(interval * (0.5 + rng.random())):
        victim = rng.choices(["service", "executor-manager", "session-manager"], weights=[6, 2, 2])[0]
        if victim == "service":
            if cluster.kill_a_service():
                report.kills["service"] += 1
        elif victim == "executor-manager":
            cluster.kill_executor_manager()
            report.kills["executor-manager"] += 1
        else:
            cluster.kill_session_manager()
            report.kills["session-manager"] += 1


def run_chaos(tasks: int, interval: float, executors: int = 2, seed: int = 1, timeout: float = 900) -> Report:
    rng = random.Random(seed)
    report = Report(tasks=tasks)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flame-chaos-") as tmp:
        root = Path(tmp)
        script = root / "digest_service.py"
        script.write_text(textwrap.dedent(SERVICE))
        cluster = Cluster(root, executors)
        stop = threading.Event()
        killer = threading.Thread(target=_kill_loop, args=(cluster, report, stop, interval, rng), daemon=True)
        try:
            conn = _connect(cluster.endpoint)
            conn.register_application("chaos", {"command": sys.executable, "arguments": [str(script)]})
            session = conn.create_session("chaos")
            inputs = [f"task-{i}".encode() for i in range(tasks)]
            futures: list[Future[bytes]] = [session.run(data) for data in inputs]
            # Kills start once every task is acknowledged (persisted by the session manager).
            while _accepted(conn, session.id) < tasks and time.monotonic() - started < 120:
                time.sleep(0.05)
            killer.start()
            wait(futures, timeout=timeout)
            stop.set()
            killer.join()
            for data, future in zip(inputs, futures, strict=True):
                if not future.done():
                    report.failed.append(f"{data.decode()}: not finished")
                elif future.exception() is not None:
                    report.failed.append(f"{data.decode()}: {future.exception()}")
                elif future.result() == expected(data):
                    report.succeeded += 1
                else:
                    report.wrong += 1
            check = _connect(cluster.endpoint)
            for task in check.get_session(session.id).list_tasks():
                if sum(1 for e in task.events if e.code == flame.TaskState.RUNNING) > 1:
                    report.ran_more_than_once += 1
            check.close()
            session.close()
            conn.close()
        finally:
            stop.set()
            cluster.stop()
    report.seconds = time.monotonic() - started
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to run (default 10000)")
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between kills (default 2)")
    parser.add_argument("--executors", type=int, default=2, help="executor slots (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the kills (default 1)")
    args = parser.parse_args()
    report = run_chaos(args.tasks, args.interval, args.executors, args.seed)
    print("\n".join(report.lines()))
    for line in report.failed[:20]:
        print("  " + line)
    return 0 if report.succeeded == args.tasks else 1


if __name__ == "__main__":
    sys.exit(main())
