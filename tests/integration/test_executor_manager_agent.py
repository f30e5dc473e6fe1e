"""The executor manager against a fake session manager (a Backend servicer on 127.0.0.1:0).

Every test runs twice: with an unmodified flamepy service (one OnTaskInvoke call per task) and with
the same service written with our SDK (tasks streamed in batches over flame.ext.v1.InstanceExt).
"""

from __future__ import annotations

import asyncio
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from flame.executor_manager import AgentSettings, ExecutorManager
from flame.protocol import backend_pb2, backend_pb2_grpc, shim_pb2, types_pb2
from flame.types import ResourceRequirement

T = TypeVar("T")

SERVICE = """
import os, threading, time
import {sdk} as flamepy


class Service(flamepy.FlameService):
    def on_session_enter(self, context):
        self.common = context.common_data() or b""
        if self.common.startswith(b"mark:"):
            open(self.common[5:], "w").close()

    def on_task_invoke(self, context):
        data = context.input or b""
        if data == b"raise":
            raise ValueError("the input is wrong")
        if data == b"exit":
            os._exit(9)
        if data == b"exit-soon":
            threading.Timer(0.2, os._exit, (7,)).start()
        if data == b"pid":
            return str(os.getpid()).encode()
        if data.startswith(b"sleep:"):
            time.sleep(float(data[6:]))
        return self.common + b"|" + data

    def on_session_leave(self):
        pass


if os.environ.get("SLOW_START"):
    time.sleep(float(os.environ["SLOW_START"]))
flamepy.run(Service())
"""


SDK = "flamepy"  # the module the service is written with; set per test by the fixture below


@pytest.fixture(autouse=True, params=["flamepy", "flame"])
def sdk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "SDK", request.param)
    return str(request.param)


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeSessionManager(backend_pb2_grpc.BackendServicer):  # type: ignore[misc]
    """Records what the agent sends; sends what the test queues."""

    def __init__(self, heartbeat_interval_ms: int = 0) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.registrations: list[backend_pb2.RegisterNode] = []
        self.messages: list[backend_pb2.AgentMessage] = []
        self._outgoing: asyncio.Queue[backend_pb2.ManagerMessage] = asyncio.Queue()

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        self.registrations.append(first.register)
        registered = backend_pb2.Registered(
            node_name=first.register.name, heartbeat_interval_ms=self.heartbeat_interval_ms
        )
        await context.write(backend_pb2.ManagerMessage(registered=registered))
        writer = asyncio.ensure_future(self._write(context))
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                self.messages.append(message)
        finally:
            writer.cancel()

    async def _write(self, context: grpc.aio.ServicerContext) -> None:
        while True:
            message = await self._outgoing.get()
            await context.write(message)

    def send(self, **fields: Any) -> None:
        self._outgoing.put_nowait(backend_pb2.ManagerMessage(**fields))

    def reports(self, executor_id: str) -> list[backend_pb2.ExecutorReport]:
        return [r for m in self.messages for r in m.executors if r.executor_id == executor_id]

    def states(self, executor_id: str) -> list[int]:
        return [r.state for r in self.reports(executor_id)]

    def outcomes(self) -> dict[str, backend_pb2.TaskOutcome]:
        return {o.task_id: o for m in self.messages for o in m.outcomes}


async def eventually(condition: Callable[[], T], timeout: float = 15) -> T:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting for the executor manager"
        await asyncio.sleep(0.01)
    return result


async def start_backend(fake: FakeSessionManager, port: int = 0) -> tuple[Any, int]:
    server = grpc.aio.server()
    backend_pb2_grpc.add_BackendServicer_to_server(fake, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@asynccontextmanager
async def backend_server(fake: FakeSessionManager, port: int = 0) -> AsyncIterator[int]:
    server, bound = await start_backend(fake, port)
    try:
        yield bound
    finally:
        await server.stop(grace=None)


@asynccontextmanager
async def serving(manager: ExecutorManager) -> AsyncIterator[ExecutorManager]:
    serve = asyncio.ensure_future(manager.serve())
    try:
        yield manager
    finally:
        await manager.shutdown()
        await serve


def settings_for(tmp_path: Path, port: int, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "session_manager": f"127.0.0.1:{port}",
        "node_name": "node-a",
        "capacity": ResourceRequirement(cpu=4, memory=8 * 2**30),
        "work_dir": tmp_path / "work",
        "socket_dir": tmp_path / "s",
        "max_executors": 3,
        "stop_grace": 0.5,
        "service_start_timeout": 20.0,
    }
    values.update(overrides)
    return AgentSettings(**values)


def application(tmp_path: Path) -> types_pb2.ApplicationSpec:
    script = tmp_path / "service.py"
    script.write_text(SERVICE.format(sdk=SDK))
    return types_pb2.ApplicationSpec(command="${FLAME_PYTHON}", arguments=[str(script)])


def bind(tmp_path: Path, executor_id: str, session_id: str, common_data: bytes = b"cd") -> backend_pb2.BindExecutor:
    return backend_pb2.BindExecutor(
        executor_id=executor_id,
        session_id=session_id,
        application_name="pingapp",
        application=application(tmp_path),
        common_data=common_data,
    )


def run_task(executor_id: str, session_id: str, task_id: str, data: bytes) -> backend_pb2.RunTask:
    return backend_pb2.RunTask(
        executor_id=executor_id, task=shim_pb2.TaskContext(task_id=task_id, session_id=session_id, input=data)
    )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


IDLE, BINDING, BOUND, RELEASED = (
    types_pb2.ExecutorIdle,
    types_pb2.ExecutorBinding,
    types_pb2.ExecutorBound,
    types_pb2.ExecutorReleased,
)


def test_registers_and_sends_heartbeats(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager(heartbeat_interval_ms=50)
        async with backend_server(fake) as port:
            settings = settings_for(tmp_path, port, heartbeat_interval_ms=60_000)
            async with serving(ExecutorManager(settings)) as manager:
                await eventually(lambda: manager.connected)
                register = fake.registrations[0]
                assert register.name == "node-a"
                assert (register.capacity.cpu, register.capacity.memory) == (4, 8 * 2**30)
                assert register.info.arch == platform.machine()
                assert register.info.os == platform.system().lower()
                assert register.max_executors == 3
                assert list(register.executors) == []
                # The interval from Registered (50 ms) wins over the configured minute.
                await eventually(lambda: sum(m.heartbeat for m in fake.messages) >= 3, timeout=5)

    run(scenario())


def test_executor_lifecycle(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            fake.send(
                create=[backend_pb2.CreateExecutor(executor_id="e1", resreq=types_pb2.ResourceRequirement(cpu=1))]
            )
            await eventually(lambda: fake.states("e1") == [IDLE])

            fake.send(bind=[bind(tmp_path, "e1", "s1")])
            await eventually(lambda: BOUND in fake.states("e1"))
            assert fake.states("e1") == [IDLE, BINDING, BOUND]
            bound = fake.reports("e1")[-1]
            assert bound.session_id == "s1"
            assert bound.log_file == str(tmp_path / "work" / "logs" / "e1.log")

            fake.send(
                run=[
                    run_task("e1", "s1", "1", b"a"),
                    run_task("e1", "s1", "2", b"raise"),
                    run_task("e1", "s1", "3", b"c"),
                ]
            )
            await eventually(lambda: len(fake.outcomes()) == 3)
            fake.send(unbind=[backend_pb2.ExecutorCommand(executor_id="e1")])
            await eventually(lambda: len(fake.states("e1")) == 4)
            outcomes = fake.outcomes()
            assert (outcomes["1"].state, outcomes["1"].output) == (types_pb2.Succeed, b"cd|a")
            assert outcomes["2"].state == types_pb2.Failed
            assert "the input is wrong" in outcomes["2"].message
            assert not outcomes["2"].retryable
            assert (outcomes["3"].state, outcomes["3"].output, outcomes["3"].session_id) == (
                types_pb2.Succeed,
                b"cd|c",
                "s1",
            )
            unbound = fake.reports("e1")[-1]
            assert unbound.state == IDLE
            assert not unbound.HasField("session_id")

            fake.send(release=[backend_pb2.ExecutorCommand(executor_id="e1")])
            await eventually(lambda: fake.states("e1")[-1] == RELEASED)
            await eventually(lambda: manager.executor_ids == [])

            # Commands for an executor this node does not have: reported released so the SM forgets it.
            fake.send(run=[run_task("ghost", "s1", "9", b"x")])
            await eventually(lambda: "9" in fake.outcomes())
            assert fake.states("ghost") == [RELEASED]
            assert fake.outcomes()["9"].retryable

    run(scenario())


def test_unbind_finishes_the_running_task_and_hands_back_queued_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")], bind=[bind(tmp_path, "e1", "s1")])
            await eventually(lambda: BOUND in fake.states("e1"))
            fake.send(run=[run_task("e1", "s1", "running", b"sleep:0.5"), run_task("e1", "s1", "queued", b"q")])
            await asyncio.sleep(0.2)  # let the first task start
            fake.send(unbind=[backend_pb2.ExecutorCommand(executor_id="e1")])
            await eventually(lambda: fake.states("e1")[-1] == IDLE)
            outcomes = fake.outcomes()
            assert (outcomes["running"].state, outcomes["running"].output) == (types_pb2.Succeed, b"cd|sleep:0.5")
            if SDK == "flamepy":  # the queued task was still at the executor manager: handed back unstarted
                assert outcomes["queued"].not_started and outcomes["queued"].retryable
            else:  # it was streamed to the service with the first one, which runs it before leaving
                assert (outcomes["queued"].state, outcomes["queued"].output) == (types_pb2.Succeed, b"cd|q")

    run(scenario())


def test_bind_failure_is_reported_with_its_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            broken = bind(tmp_path, "e1", "s1")
            broken.application.command = "/no/such/service"
            fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")], bind=[broken])
            await eventually(lambda: len(fake.states("e1")) == 3)
            failed = fake.reports("e1")[-1]
            assert (failed.state, failed.session_id) == (IDLE, "s1")
            assert "'/no/such/service' not found" in failed.message
            assert failed.log_file

    run(scenario())


def test_batches_outcomes(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")], bind=[bind(tmp_path, "e1", "s1")])
            await eventually(lambda: BOUND in fake.states("e1"))
            before = len(fake.messages)
            began = time.perf_counter()
            fake.send(run=[run_task("e1", "s1", str(i), b"x") for i in range(50)])
            await eventually(lambda: len(fake.outcomes()) == 50)
            elapsed = time.perf_counter() - began
            carrying = [m for m in fake.messages[before:] if m.outcomes]
            print(f"50 tasks: {elapsed * 1000:.1f} ms, {len(carrying)} messages")
            assert all(o.state == types_pb2.Succeed for o in fake.outcomes().values())
            assert len(carrying) <= 20

    run(scenario())


def test_service_death_fails_queued_tasks_and_frees_the_executor(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")], bind=[bind(tmp_path, "e1", "s1")])
            await eventually(lambda: BOUND in fake.states("e1"))
            fake.send(run=[run_task("e1", "s1", "1", b"exit"), run_task("e1", "s1", "2", b"b")])
            await eventually(lambda: len(fake.outcomes()) == 2 and fake.states("e1")[-1] == IDLE)
            died, queued = fake.outcomes()["1"], fake.outcomes()["2"]
            assert (died.state, died.retryable) == (types_pb2.Failed, True)
            assert "exited with code 9" in died.message
            assert (queued.state, queued.retryable) == (types_pb2.Failed, True)
            if SDK == "flame":  # streamed behind the running task: the service never started it
                assert queued.not_started and not died.not_started
            idle = fake.reports("e1")[-1]
            assert "exited with code 9" in idle.message
            assert not idle.HasField("session_id")

            # The executor can be bound again.
            fake.send(bind=[bind(tmp_path, "e1", "s2", common_data=b"again")], run=[run_task("e1", "s2", "3", b"z")])
            await eventually(lambda: "3" in fake.outcomes())
            assert fake.outcomes()["3"].output == b"again|z", fake.outcomes()["3"]

            # A service that exits between tasks is noticed without waiting for the next task.
            fake.send(run=[run_task("e1", "s2", "4", b"exit-soon")])
            await eventually(lambda: "4" in fake.outcomes() and fake.states("e1")[-1] == IDLE)
            assert fake.outcomes()["4"].state == types_pb2.Succeed
            assert "service exited with code 7 while bound" in fake.reports("e1")[-1].message

    run(scenario())


def test_reconnects_keeping_the_service_and_buffered_outcomes(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        server, port = await start_backend(fake)
        manager = ExecutorManager(settings_for(tmp_path, port))
        async with serving(manager):
            await eventually(lambda: manager.connected)
            fake.send(
                create=[backend_pb2.CreateExecutor(executor_id="e1")],
                bind=[bind(tmp_path, "e1", "s1")],
                run=[run_task("e1", "s1", "pid", b"pid")],
            )
            await eventually(lambda: "pid" in fake.outcomes())
            pid = int(fake.outcomes()["pid"].output)
            # A task that finishes while the session manager is away.
            fake.send(run=[run_task("e1", "s1", "slow", b"sleep:0.5")])
            await asyncio.sleep(0.1)
            await server.stop(grace=None)
            await eventually(lambda: not manager.connected)

            restarted = FakeSessionManager()
            async with backend_server(restarted, port):
                await eventually(lambda: manager.connected)
                register = restarted.registrations[0]
                assert [(r.executor_id, r.state, r.session_id) for r in register.executors] == [("e1", BOUND, "s1")]
                await eventually(lambda: "slow" in restarted.outcomes())
                assert "slow" not in fake.outcomes()
                assert restarted.outcomes()["slow"].output == b"cd|sleep:0.5"
                restarted.send(run=[run_task("e1", "s1", "pid2", b"pid")])
                await eventually(lambda: "pid2" in restarted.outcomes())
                assert int(restarted.outcomes()["pid2"].output) == pid

                await manager.shutdown()
                assert not alive(pid)
                await eventually(lambda: restarted.states("e1")[-1:] == [RELEASED])

    run(scenario())


def test_shutdown_stops_services_and_reports_them_released(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port:
            manager = ExecutorManager(settings_for(tmp_path, port))
            serve = asyncio.ensure_future(manager.serve())
            await eventually(lambda: manager.connected)
            fake.send(
                create=[backend_pb2.CreateExecutor(executor_id="e1")],
                bind=[bind(tmp_path, "e1", "s1")],
                run=[run_task("e1", "s1", "pid", b"pid"), run_task("e1", "s1", "long", b"sleep:30")],
            )
            await eventually(lambda: "pid" in fake.outcomes())
            pid = int(fake.outcomes()["pid"].output)
            began = time.monotonic()
            await manager.shutdown()
            await manager.shutdown()  # idempotent
            await serve
            assert time.monotonic() - began < 5
            assert not alive(pid)
            interrupted = fake.outcomes()["long"]
            assert (interrupted.state, interrupted.retryable) == (types_pb2.Failed, True)
            assert fake.states("e1")[-1] == RELEASED
            assert manager.executor_ids == []

    run(scenario())


AGENT_MAIN = """
import logging, sys
from pathlib import Path
from flame.executor_manager import AgentSettings, run_executor_manager
from flame.types import ResourceRequirement

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
endpoint, work_dir, socket_dir = sys.argv[1:]
settings = AgentSettings(
    session_manager=endpoint,
    node_name="node-signal",
    capacity=ResourceRequirement(cpu=1),
    work_dir=Path(work_dir),
    socket_dir=Path(socket_dir),
    stop_grace=0.5,
)
run_executor_manager(settings)
"""


def test_run_executor_manager_shuts_down_on_sigterm(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port:
            output = tmp_path / "agent.out"
            with output.open("wb") as sink:
                agent = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    AGENT_MAIN,
                    f"127.0.0.1:{port}",
                    str(tmp_path / "work"),
                    str(tmp_path / "s"),
                    stdout=sink,
                    stderr=sink,
                )
            try:
                await eventually(lambda: fake.registrations)
                fake.send(
                    create=[backend_pb2.CreateExecutor(executor_id="e1")],
                    bind=[bind(tmp_path, "e1", "s1")],
                    run=[run_task("e1", "s1", "pid", b"pid")],
                )
                await eventually(lambda: "pid" in fake.outcomes())
                pid = int(fake.outcomes()["pid"].output)
                agent.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(agent.wait(), 10) == 0
            finally:
                if agent.returncode is None:
                    agent.kill()
                    await agent.wait()
            assert not alive(pid)
            assert fake.states("e1")[-1] == RELEASED
            log = output.read_text()
            assert "received SIGTERM" in log
            assert "executor e1 released" in log

    run(scenario())


def test_a_session_unbound_while_binding_is_never_entered(tmp_path: Path) -> None:
    marker = tmp_path / "entered"

    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port, serving(ExecutorManager(settings_for(tmp_path, port))) as manager:
            await eventually(lambda: manager.connected)
            slow = bind(tmp_path, "e1", "s1", common_data=b"mark:" + str(marker).encode())
            slow.application.environments.add(name="SLOW_START", value="1.0")
            fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")], bind=[slow])
            await eventually(lambda: BINDING in fake.states("e1"))
            fake.send(unbind=[backend_pb2.ExecutorCommand(executor_id="e1")])
            await eventually(lambda: fake.states("e1")[-1] == IDLE and len(fake.states("e1")) >= 3)
            assert BOUND not in fake.states("e1")
            # The executor is usable at once for the next session.
            fake.send(bind=[bind(tmp_path, "e1", "s2")], run=[run_task("e1", "s2", "1", b"x")])
            await eventually(lambda: "1" in fake.outcomes())
            assert fake.outcomes()["1"].output == b"cd|x"
        assert not marker.exists()  # on_session_enter never ran for the closed session

    run(scenario())
