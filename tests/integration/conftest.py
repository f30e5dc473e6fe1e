"""Shared helpers for tests that run real clusters."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flame.testing import LocalCluster


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def write_service(tmp_path: Path, name: str, body: str) -> dict[str, object]:
    """Write a service script and return flamepy-style application attributes that run it."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(body))
    return {"command": sys.executable, "arguments": [str(script)], "working_directory": str(tmp_path)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=4) as local:
        yield local
