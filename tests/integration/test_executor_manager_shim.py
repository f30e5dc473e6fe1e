"""The host shim against real service processes (unmodified flamepy services)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flame.executor_manager import AgentSettings
from flame.executor_manager.shims import HostService, ServiceLost, ShimError
from flame.protocol import shim_pb2
from flame.types import ApplicationSpec, ResourceRequirement

T = TypeVar("T")

SERVICE = """
import json, os, signal, subprocess, sys
import flamepy


class Service(flamepy.FlameService):
    def on_session_enter(self, context):
        self.common = context.common_data() or b""
        print(f"entered session {context.session_id} with {self.common!r}", flush=True)
        if self.common == b"fail-enter":
            raise RuntimeError("cannot load the model")
        if self.common == b"spawn":
            # A child in the service's process group that ignores SIGTERM.
            code = (
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"
            )
            self.child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            self.child.stdout.readline()

    def on_task_invoke(self, context):
        data = context.input or b""
        if data == b"raise":
            raise ValueError("the input is wrong")
        if data == b"exit":
            print("about to exit", flush=True)
            os._exit(9)
        if data == b"env":
            names = [n for n in os.environ if n.startswith(("FLAME_", "APP_"))]
            env = {n: os.environ[n] for n in names}
            return json.dumps({"env": env, "cwd": os.getcwd(), "argv": sys.argv}).encode()
        if data == b"pids":
            child = getattr(self, "child", None)
            return json.dumps({"pid": os.getpid(), "child": child.pid if child else None}).encode()
        return self.common + b"|" + data

    def on_session_leave(self):
        print("leaving the session", flush=True)


flamepy.run(Service())
"""


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def settings_for(tmp_path: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "session_manager": "127.0.0.1:1",
        "node_name": "node-1",
        "capacity": ResourceRequirement(cpu=2, memory=2**30),
        "work_dir": tmp_path / "work",
        "socket_dir": tmp_path / "s",
        "service_start_timeout": 20.0,
        "stop_grace": 0.5,
    }
    values.update(overrides)
    return AgentSettings(**values)


def flamepy_app(tmp_path: Path, **fields: Any) -> ApplicationSpec:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    return ApplicationSpec(command="${FLAME_PYTHON}", arguments=[str(script)], **fields)


def task(task_id: str, data: bytes, session_id: str = "s1") -> shim_pb2.TaskContext:
    return shim_pb2.TaskContext(task_id=task_id, session_id=session_id, input=data)


def session(common_data: bytes | None, session_id: str = "s1") -> shim_pb2.SessionContext:
    application = shim_pb2.ApplicationContext(name="app")
    return shim_pb2.SessionContext(session_id=session_id, application=application, common_data=common_data)


@asynccontextmanager
async def started(
    settings: AgentSettings, spec: ApplicationSpec, executor_id: str = "e1"
) -> AsyncIterator[HostService]:
    service = await HostService.start(settings, executor_id=executor_id, session_id="s1", application="app", spec=spec)
    try:
        yield service
    finally:
        await service.stop()


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_session_tasks_and_log(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    async def scenario() -> None:
        async with started(settings, flamepy_app(tmp_path)) as service:
            await service.enter(session(b"market-data"))
            result = await service.invoke(task("1", b"x"))
            assert (result.return_code, result.output) == (0, b"market-data|x")
            failed = await service.invoke(task("2", b"raise"))
            assert failed.return_code != 0
            assert "the input is wrong" in failed.message
            again = await service.invoke(task("3", b"y"))
            assert again.output == b"market-data|y"
            await service.leave(timeout=5)
            log = service.log_file
        text = log.read_text()
        assert log == settings.work_dir / "logs" / "e1.log"
        assert "session s1 (application app)" in text.splitlines()[0]
        assert "entered session s1 with b'market-data'" in text
        assert "leaving the session" in text

    run(scenario())


def test_environment_argv_and_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_LEVEL", "debug")
    settings = settings_for(tmp_path)
    spec = flamepy_app(
        tmp_path,
        environments={"APP_LEVEL": "${EM_LEVEL}", "APP_MISSING": "[$NOT_SET_ANYWHERE]", "APP_PY": "$FLAME_PYTHON"},
        working_directory=str(tmp_path / "app-dir"),
    )
    spec.arguments.append("--executor=${FLAME_EXECUTOR_ID}")

    async def scenario() -> dict[str, Any]:
        async with started(settings, spec) as service:
            await service.enter(session(None))
            result = await service.invoke(task("1", b"env"))
            return dict(json.loads(result.output))

    seen = run(scenario())
    env = seen["env"]
    assert env["APP_LEVEL"] == "debug"
    assert env["APP_MISSING"] == "[]"
    assert env["APP_PY"] == sys.executable == env["FLAME_PYTHON"]
    assert env["FLAME_EXECUTOR_ID"] == "e1"
    assert env["FLAME_SESSION_ID"] == "s1"
    assert env["FLAME_INSTANCE_ENDPOINT"] == str(settings.socket_dir / "e1.sock")
    assert seen["argv"][1:] == ["--executor=e1"]
    assert Path(seen["cwd"]) == tmp_path / "app-dir"


def test_enter_failure_is_reported_with_the_service_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(settings_for(tmp_path), flamepy_app(tmp_path)) as service:
            with pytest.raises(ShimError, match="cannot load the model"):
                await service.enter(session(b"fail-enter"))

    run(scenario())


def test_missing_command_fails_quickly(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    async def start(spec: ApplicationSpec) -> None:
        await HostService.start(settings, executor_id="e1", session_id="s1", application="app", spec=spec)

    began = time.monotonic()
    with pytest.raises(ShimError, match="command '/no/such/service' not found"):
        run(start(ApplicationSpec(command="/no/such/service")))
    with pytest.raises(ShimError, match="application app has no command"):
        run(start(ApplicationSpec()))
    assert time.monotonic() - began < 2
    assert "not found" in (settings.work_dir / "logs" / "e1.log").read_text()


def test_service_exiting_at_start_reports_code_and_log(tmp_path: Path) -> None:
    code = "import sys; print('config file missing', flush=True); sys.exit(3)"
    spec = ApplicationSpec(command=sys.executable, arguments=["-c", code])

    async def start() -> None:
        await HostService.start(settings_for(tmp_path), executor_id="e1", session_id="s1", application="a", spec=spec)

    with pytest.raises(ShimError) as caught:
        run(start())
    assert "service exited with code 3 before it was ready" in caught.value.message
    assert "config file missing" in caught.value.message


def test_service_that_never_listens_times_out(tmp_path: Path) -> None:
    # A command with spaces is split like a shell would.
    spec = ApplicationSpec(command=f"{sys.executable} -c 'import time; time.sleep(30)'")
    settings = settings_for(tmp_path, service_start_timeout=0.5)

    async def start() -> None:
        await HostService.start(settings, executor_id="e1", session_id="s1", application="a", spec=spec)

    began = time.monotonic()
    with pytest.raises(ShimError, match=r"did not listen on its socket .* within 0.5s"):
        run(start())
    assert time.monotonic() - began < 5


def test_service_dying_mid_task_is_a_lost_service(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with started(settings_for(tmp_path), flamepy_app(tmp_path)) as service:
            await service.enter(session(b""))
            with pytest.raises(ServiceLost) as caught:
                await service.invoke(task("1", b"exit"))
            assert "service exited with code 9 during task 1" in caught.value.message
            assert "about to exit" in caught.value.message
            assert service.returncode == 9

    run(scenario())


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, stop_grace=0.3)

    async def scenario() -> dict[str, int]:
        async with started(settings, flamepy_app(tmp_path)) as service:
            await service.enter(session(b"spawn"))
            result = await service.invoke(task("1", b"pids"))
            pids: dict[str, int] = json.loads(result.output)
            assert alive(pids["pid"]) and alive(pids["child"])
            assert os.getpgid(pids["child"]) == pids["pid"]
        # The child ignores SIGTERM: only the SIGKILL to the process group ends it.
        await service.stop()  # idempotent
        assert not settings.socket_dir.joinpath("e1.sock").exists()
        return pids

    pids = run(scenario())
    deadline = time.monotonic() + 5
    while (alive(pids["pid"]) or alive(pids["child"])) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pids["pid"])
    assert not alive(pids["child"])
