"""`flame up` in its own process for the benchmarks: free ports for every listener, a fresh data dir.

Each listener (session manager, object cache, dashboard) gets a port the OS just handed out, so two
clusters of one run, or a benchmark beside someone's `flame up` on the default ports, never collide.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import flame


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FlameUp:
    endpoint: str
    port: int
    cache_endpoint: str
    dashboard: str | None  # the dashboard's base URL, None when disabled
    data_dir: Path
    process: subprocess.Popen[bytes]
    spawned: float  # time.perf_counter() just before the spawn

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for_node(self, token: str | None = None, timeout: float = 60.0) -> None:
        """Until the session manager answers and its local node has registered."""
        wait_for_node(self.endpoint, {"flame up": self.process}, token, timeout)


def wait_for_node(
    endpoint: str, processes: dict[str, subprocess.Popen[bytes]], token: str | None = None, timeout: float = 60.0
) -> None:
    """Until the session manager at ``endpoint`` answers and has a node; stops early if one of
    ``processes`` (by name) exits."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(flame.Unavailable), flame.connect(endpoint, timeout=1, token=token) as conn:
            if conn.list_nodes():
                return
        for name, process in processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with code {process.returncode} during start-up")
        if time.monotonic() > deadline:
            raise SystemExit(f"the session manager at {endpoint} had no node within {timeout:.0f}s")
        time.sleep(0.05)


@contextlib.contextmanager
def flame_up(
    executors: int,
    storage: str = "memory",
    cluster: dict[str, Any] | None = None,
    dashboard: bool = True,
    data_dir: Path | None = None,
) -> Iterator[FlameUp]:
    """Spawn `flame up` with ``cluster`` (extra keys of its ``cluster:`` section); SIGINT it on exit."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flame-bench-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        port, dashboard_port = free_port(), free_port()
        section = {**(cluster or {}), "dashboard": {"enabled": dashboard, "port": dashboard_port}}
        config = data_dir / "flame-cluster.yaml"
        config.write_text(yaml.safe_dump({"cluster": section}))
        endpoint = f"http://127.0.0.1:{port}"
        cache = f"grpc://127.0.0.1:{free_port()}"
        args = ["up", "--config", str(config), "--endpoint", endpoint, "--cache-endpoint", cache]
        args += ["--data-dir", str(data_dir), "--storage", storage, "--executors", str(executors)]
        cmd = [sys.executable, "-m", "flame", "--log-level", "WARNING", *args]
        spawned = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{dashboard_port}/" if dashboard else None
        try:
            yield FlameUp(endpoint, port, cache, url, data_dir, process, spawned)
        finally:
            interrupt(process)


def interrupt(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGINT ``process`` (a clean shutdown); kill it if it has not exited within ``timeout``."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class FlameSplit:
    """A session manager and one executor manager, each its own process (as on separate machines)."""

    endpoint: str
    port: int
    session_manager: subprocess.Popen[bytes]
    executor_manager: subprocess.Popen[bytes]

    def wait_for_node(self, timeout: float = 60.0) -> None:
        processes = {"flame session-manager": self.session_manager, "flame executor-manager": self.executor_manager}
        wait_for_node(self.endpoint, processes, None, timeout)


@contextlib.contextmanager
def flame_split(executors: int, storage: str = "memory", data_dir: Path | None = None) -> Iterator[FlameSplit]:
    """Spawn `flame session-manager` and `flame executor-manager` (dashboard on, as `flame up` has
    it); SIGINT both on exit, the executor manager first."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flame-bench-")))
        port = free_port()
        config = data_dir / "flame-cluster.yaml"
        config.write_text(yaml.safe_dump({"cluster": {"dashboard": {"enabled": True, "port": free_port()}}}))
        endpoint = f"http://127.0.0.1:{port}"
        flame = [sys.executable, "-m", "flame", "--log-level", "WARNING"]
        sm_args = ["session-manager", "--config", str(config), "--endpoint", endpoint]
        sm_args += ["--data-dir", str(data_dir), "--storage", storage]
        em_args = ["executor-manager", "--session-manager", endpoint, "--max-executors", str(executors)]
        em_args += ["--work-dir", str(data_dir / "node"), "--capacity", f"cpu={executors},mem={executors}g"]
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(subprocess.Popen([*flame, *sm_args], stdout=subprocess.DEVNULL))
            processes.append(subprocess.Popen([*flame, *em_args], stdout=subprocess.DEVNULL))
            yield FlameSplit(endpoint, port, processes[0], processes[1])
        finally:
            for process in reversed(processes):
                interrupt(process)
