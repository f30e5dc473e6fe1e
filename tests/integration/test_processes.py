"""Session manager, executor manager and client as separate processes with separate configs,
and a session manager killed with SIGKILL and restarted on the same data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import flamepy
import pytest

import flame
from tests.integration.conftest import free_port, process_alive, wait_for, write_service

SERVICE = """
    import flamepy

    class Square(flamepy.FlameService):
        def on_session_enter(self, context):
            pass

        def on_task_invoke(self, context):
            n = int(context.input)
            return str(n * n).encode()

        def on_session_leave(self):
            pass

    flamepy.run(Square())
"""

CLIENT = """
    import sys
    from concurrent.futures import wait
    import flamepy

    conn = flamepy.connect(sys.argv[1])
    conn.register_application("square", eval(sys.argv[2]))
    session = conn.create_session(flamepy.SessionAttributes(application="square", id="sq-1"))
    futures = [session.run(str(i).encode()) for i in range(20)]
    wait(futures, timeout=120)
    print("outputs", [f.result().decode() for f in futures], flush=True)
    for i in range(20, 25):
        session.create_task(str(i).encode())
    print("accepted", flush=True)
"""


def _flame(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "flame", *args], stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _connect(endpoint: str) -> flamepy.Connection:
    return wait_for(lambda: _try_connect(endpoint), timeout=30)  # type: ignore[return-value]


def _try_connect(endpoint: str) -> flamepy.Connection | None:
    try:
        return flamepy.connect(endpoint)
    except flamepy.FlameError:
        return None


class Processes:
    """A session manager and an executor manager, each a `flame` process with its own config file."""

    def __init__(self, tmp_path: Path) -> None:
        port = free_port()
        self.tmp_path = tmp_path
        self.endpoint = f"http://127.0.0.1:{port}"
        self.sm_config = tmp_path / "sm.yaml"
        self.sm_config.write_text(
            f"cluster:\n  name: test\n  endpoint: {self.endpoint}\n"
            f"  storage: sqlite://state/flame.db\n  data_dir: {tmp_path / 'sm'}\n  schedule_interval: 100\n"
        )
        self.em_config = tmp_path / "em.yaml"
        self.em_config.write_text(
            f"executor_manager:\n  session_manager: {self.endpoint}\n  node_name: node-a\n"
            f"  max_executors: 2\n  capacity: cpu=2,mem=2g\n  work_dir: {tmp_path / 'em'}\n"
        )
        self.started: list[subprocess.Popen[bytes]] = []

    def session_manager(self) -> subprocess.Popen[bytes]:
        self.started.append(_flame("session-manager", "--config", str(self.sm_config), log=self.tmp_path / "sm.log"))
        return self.started[-1]

    def executor_manager(self) -> subprocess.Popen[bytes]:
        self.started.append(_flame("executor-manager", "--config", str(self.em_config), log=self.tmp_path / "em.log"))
        return self.started[-1]

    def stop(self) -> None:
        for process in reversed(self.started):
            _stop(process)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop()


def test_three_processes_and_sigkill_restart(processes: Processes, tmp_path: Path) -> None:
    endpoint = processes.endpoint
    sm = processes.session_manager()
    processes.executor_manager()
    _connect(endpoint)
    attrs = write_service(tmp_path, "square_service", SERVICE)
    client = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT), endpoint, repr(attrs)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert client.returncode == 0, client.stderr
    assert f"outputs {[str(i * i) for i in range(20)]}" in client.stdout
    assert "accepted" in client.stdout

    sm.send_signal(signal.SIGKILL)
    sm.wait()
    processes.session_manager()
    conn = _connect(endpoint)

    session = conn.get_session("sq-1")
    assert session.application == "square"
    tasks = {t.id: t for t in conn.get_session("sq-1").list_tasks()}
    assert sorted(tasks, key=int) == [str(i) for i in range(1, 26)]
    for i in range(1, 21):
        assert tasks[str(i)].state == flamepy.TaskState.SUCCEED
        assert tasks[str(i)].output == str((i - 1) ** 2).encode()

    # the five tasks accepted just before the kill run once the executor manager reconnects
    def all_done() -> bool:
        current = conn.get_session("sq-1")
        return current.succeed == 25

    wait_for(all_done, timeout=60)
    for i in range(21, 26):
        assert conn.get_session("sq-1").get_task(str(i)).output == str((i - 1) ** 2).encode()
    conn.close_session("sq-1")


def test_a_standalone_session_manager_registers_the_builtins_and_keeps_them_across_a_restart(
    processes: Processes,
) -> None:
    sm = processes.session_manager()
    processes.executor_manager()
    _connect(processes.endpoint)
    with flame.connect(processes.endpoint) as conn:
        assert {"flmexec", "flmfunc", "flmping", "flmrun"} <= {app.name for app in conn.list_applications()}
        session = conn.create_session("flmping")
        assert json.loads(session.run(b"").result(60))["session"] == session.id
        session.close()
    _stop(sm)
    processes.session_manager()  # built-ins already in its database: start-up keeps them
    _connect(processes.endpoint)
    with flame.connect(processes.endpoint) as conn:
        assert "flmping" in {app.name for app in conn.list_applications()}


def test_services_die_with_a_killed_executor_manager_and_a_new_one_serves(processes: Processes, tmp_path: Path) -> None:
    processes.session_manager()
    agent = processes.executor_manager()
    conn = _connect(processes.endpoint)
    conn.register_application("square", write_service(tmp_path, "square_service", SERVICE))
    session = conn.create_session(flamepy.SessionAttributes(application="square", min_instances=1))
    assert session.invoke(b"3") == b"9"
    pid_files = list((tmp_path / "em" / "pids").glob("*.pid"))
    assert len(pid_files) == 1
    service_pid = int(pid_files[0].read_text().split("\n")[0])
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    # Its own process group, but started with a parent-death signal: it goes with the agent.
    wait_for(lambda: not process_alive(service_pid), timeout=15)
    processes.executor_manager()
    assert session.invoke(b"4") == b"16"  # and the new agent serves the session
    conn.close_session(session.id)
