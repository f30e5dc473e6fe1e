"""The service SDK (FlameService + InstanceServer) and flmping, driven through flamepy's Instance stubs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from flamepy.proto import shim_pb2, shim_pb2_grpc, types_pb2

import flame
from flame.apps.flmping import FLMPING_APPLICATION, FlmpingService, flmping_application_spec
from flame.service import InstanceServer
from flame.service._batch import Result, result_batch

DEADLINE = 20.0


class Recorder(flame.FlameService):
    """A plain service that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.threads: set[str] = set()

    def on_session_enter(self, context: flame.SessionContext) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(("enter", context))

    def on_task_invoke(self, context: flame.TaskContext) -> bytes | None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(("invoke", context))
        if context.input == b"none":
            return None
        if context.input == b"bad":
            raise ValueError("bad input")
        if context.input == b"text":
            return "not bytes"  # type: ignore[return-value]
        return (context.input or b"").upper()

    def on_session_leave(self) -> None:
        self.calls.append(("leave",))


class AsyncEcho(flame.FlameService):
    def __init__(self) -> None:
        self.entered: str | None = None
        self.left = False

    async def on_session_enter(self, context: flame.SessionContext) -> None:
        await asyncio.sleep(0)
        self.entered = context.session_id

    async def on_task_invoke(self, context: flame.TaskContext) -> bytes | None:
        await asyncio.sleep(0)
        if context.input == b"bad":
            raise KeyError("missing")
        return b"async:" + (context.input or b"")

    async def on_session_leave(self) -> None:
        self.left = True


class FailingEnter(flame.FlameService):
    def on_session_enter(self, context: flame.SessionContext) -> None:
        raise RuntimeError("cannot load the model")


Stub = Any


def serve(service: flame.FlameService, tmp_path: Path, body: Callable[[Stub], Awaitable[None]]) -> None:
    """Run ``body`` with a flamepy Instance stub connected to ``service`` served in-process."""
    path = str(tmp_path / "i.sock")

    async def main() -> None:
        async with InstanceServer(service, path), grpc.aio.insecure_channel(f"unix:{path}") as channel:
            await asyncio.wait_for(body(shim_pb2_grpc.InstanceStub(channel)), DEADLINE)

    asyncio.run(main())


def enter_request(session_id: str = "s1", common_data: bytes | None = b"shared") -> Any:
    app = shim_pb2.ApplicationContext(name="app", shim=0, image="img", command="python", working_directory="/w")
    return shim_pb2.SessionContext(session_id=session_id, application=app, common_data=common_data)


def task_request(task_id: str, data: bytes | None, session_id: str = "s1") -> Any:
    return shim_pb2.TaskContext(task_id=task_id, session_id=session_id, input=data)


def test_enter_invoke_leave_reach_a_plain_service(tmp_path: Path) -> None:
    service = Recorder()

    async def body(stub: Stub) -> None:
        assert (await stub.OnSessionEnter(enter_request())).return_code == 0
        result = await stub.OnTaskInvoke(task_request("1", b"abc"))
        assert (result.return_code, result.output) == (0, b"ABC")
        result = await stub.OnTaskInvoke(task_request("2", b"none"))
        assert result.return_code == 0 and not result.HasField("output")
        assert (await stub.OnSessionLeave(types_pb2.EmptyRequest())).return_code == 0

    serve(service, tmp_path, body)
    (_, session), (_, task), _, leave = service.calls
    assert session.session_id == "s1" and session.common_data() == b"shared"
    app = session.application
    assert (app.name, app.image, app.command, app.working_directory, app.url) == ("app", "img", "python", "/w", None)
    assert (task.task_id, task.session_id, task.input) == ("1", "s1", b"abc")
    assert leave == ("leave",)
    assert threading.main_thread().name not in service.threads  # plain methods run in worker threads


def test_async_methods_are_awaited(tmp_path: Path) -> None:
    service = AsyncEcho()

    async def body(stub: Stub) -> None:
        assert (await stub.OnSessionEnter(enter_request("s9", None))).return_code == 0
        assert (await stub.OnTaskInvoke(task_request("1", b"x", "s9"))).output == b"async:x"
        failed = await stub.OnTaskInvoke(task_request("2", b"bad", "s9"))
        assert (failed.return_code, failed.message) == (-1, "KeyError: 'missing'")
        assert (await stub.OnSessionLeave(types_pb2.EmptyRequest())).return_code == 0

    serve(service, tmp_path, body)
    assert (service.entered, service.left) == ("s9", True)


def test_exceptions_become_return_code_minus_one_with_the_error_text(tmp_path: Path) -> None:
    async def body(stub: Stub) -> None:
        assert (await stub.OnSessionEnter(enter_request())).return_code == 0
        failed = await stub.OnTaskInvoke(task_request("1", b"bad"))
        assert (failed.return_code, failed.message) == (-1, "ValueError: bad input")
        wrong_type = await stub.OnTaskInvoke(task_request("2", b"text"))
        assert wrong_type.return_code == -1
        assert wrong_type.message == "TypeError: on_task_invoke must return bytes or None, not str"
        assert (await stub.OnTaskInvoke(task_request("3", b"ok"))).output == b"OK"  # the session goes on

    serve(Recorder(), tmp_path, body)

    async def enter_fails(stub: Stub) -> None:
        result = await stub.OnSessionEnter(enter_request())
        assert (result.return_code, result.message) == (-1, "RuntimeError: cannot load the model")
        refused = await stub.OnTaskInvoke(task_request("1", b"x"))
        assert refused.return_code == -1 and "OnSessionEnter" in refused.message

    serve(FailingEnter(), tmp_path, enter_fails)


def test_tasks_before_enter_or_of_another_session_are_refused(tmp_path: Path) -> None:
    service = Recorder()

    async def body(stub: Stub) -> None:
        refused = await stub.OnTaskInvoke(task_request("1", b"x"))
        assert refused.return_code == -1
        assert refused.message == "task 1 refused: no session entered yet (OnSessionEnter must succeed first)"
        assert (await stub.OnSessionEnter(enter_request("s1"))).return_code == 0
        other = await stub.OnTaskInvoke(task_request("2", b"x", "s2"))
        assert other.return_code == -1 and "not to the entered session s1" in other.message
        assert (await stub.OnSessionLeave(types_pb2.EmptyRequest())).return_code == 0
        after = await stub.OnTaskInvoke(task_request("3", b"x"))
        assert after.return_code == -1

    serve(service, tmp_path, body)
    assert [c[0] for c in service.calls] == ["enter", "leave"]  # the user's code never saw those tasks


def test_a_blocking_method_does_not_block_the_server(tmp_path: Path) -> None:
    second_arrived = threading.Event()

    class Rendezvous(flame.FlameService):
        def on_task_invoke(self, context: flame.TaskContext) -> bytes | None:
            if context.task_id == "1":  # blocks until task 2 runs: only possible off the event loop
                return b"met" if second_arrived.wait(DEADLINE) else b"alone"
            second_arrived.set()
            return b"second"

    async def body(stub: Stub) -> None:
        await stub.OnSessionEnter(enter_request())
        first = asyncio.ensure_future(stub.OnTaskInvoke(task_request("1", b"")))
        second = await stub.OnTaskInvoke(task_request("2", b""))
        assert (second.output, (await first).output) == (b"second", b"met")

    serve(Rendezvous(), tmp_path, body)


def test_run_without_an_instance_endpoint_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAME_INSTANCE_ENDPOINT", raising=False)
    with pytest.raises(flame.InvalidArgument, match="FLAME_INSTANCE_ENDPOINT is not set"):
        flame.run(Recorder())


def test_flmping_reports_where_it_ran_and_refuses_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_EXECUTOR_ID", "exec-7")

    async def body(stub: Stub) -> None:
        assert (await stub.OnSessionEnter(enter_request("ping-1"))).return_code == 0
        empty = await stub.OnTaskInvoke(task_request("1", None, "ping-1"))
        assert json.loads(empty.output) == {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "executor": "exec-7",
            "session": "ping-1",
            "task": "1",
            "duration_ms": 0,
        }
        started = time.monotonic()
        slept = await stub.OnTaskInvoke(task_request("2", b'{"duration_ms": 30}', "ping-1"))
        assert json.loads(slept.output)["duration_ms"] == 30 and time.monotonic() - started >= 0.03
        for bad, why in (
            (b"nope", "must be JSON"),
            (b'{"duration_ms": -1}', "from 0 to"),
            (b'{"duration_ms": "10"}', "whole number"),
            (b'{"duration": 10}', 'only "duration_ms"'),
        ):
            result = await stub.OnTaskInvoke(task_request("3", bad, "ping-1"))
            assert result.return_code == -1 and result.message.startswith("ValueError: ") and why in result.message

    serve(FlmpingService(), tmp_path, body)


def test_flmping_application_spec() -> None:
    spec = flmping_application_spec()
    assert FLMPING_APPLICATION == "flmping"
    assert (spec.command, spec.arguments) == ("${FLAME_PYTHON}", ["-m", "flame.apps.flmping"])
    assert spec.description


def test_flmping_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    env = {**os.environ, "FLAME_INSTANCE_ENDPOINT": path, "FLAME_EXECUTOR_ID": "exec-1"}
    process = subprocess.Popen([sys.executable, "-m", "flame.apps.flmping"], env=env, stderr=subprocess.PIPE)
    try:

        async def ping() -> bytes:
            async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
                await asyncio.wait_for(channel.channel_ready(), DEADLINE)
                stub = shim_pb2_grpc.InstanceStub(channel)
                assert (await stub.OnSessionEnter(enter_request("p1"))).return_code == 0
                output: bytes = (await stub.OnTaskInvoke(task_request("1", b"", "p1"))).output
                return output

        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(path):
            assert process.poll() is None and time.monotonic() < deadline, "flmping did not start"
            time.sleep(0.01)
        reply = json.loads(asyncio.run(ping()))
        assert (reply["pid"], reply["executor"], reply["session"]) == (process.pid, "exec-1", "p1")
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def serve_streamed(service: flame.FlameService, tmp_path: Path, tasks: list[tuple[str, bytes]]) -> list[Any]:
    """Enter session s1 through flamepy's stub, then stream ``tasks`` in two batches; the results in order."""
    from flame.protocol import ext_pb2, ext_pb2_grpc
    from flame.protocol import shim_pb2 as our_shim_pb2

    path = str(tmp_path / "i.sock")

    async def main() -> list[Any]:
        async with InstanceServer(service, path), grpc.aio.insecure_channel(f"unix:{path}") as channel:
            await shim_pb2_grpc.InstanceStub(channel).OnSessionEnter(enter_request())
            call = ext_pb2_grpc.InstanceExtStub(channel).Invoke()
            assert ("flame-batch", "1") in tuple(await call.initial_metadata())
            contexts = [our_shim_pb2.TaskContext(task_id=i, session_id="s1", input=d) for i, d in tasks]
            half = len(contexts) // 2
            await call.write(ext_pb2.InvokeBatch(tasks=contexts[:half]))
            await call.write(ext_pb2.InvokeBatch(tasks=contexts[half:]))
            results: list[Any] = []
            messages = 0
            while len(results) < len(tasks):
                batch = await asyncio.wait_for(call.read(), DEADLINE)
                results.extend(batch.results)
                messages += 1
            call.cancel()
            assert messages <= len(tasks)
            return results

    return asyncio.run(main())


def test_streamed_invoke_runs_a_plain_service_in_order_on_one_thread(tmp_path: Path) -> None:
    service = Recorder()
    tasks = [(str(i), b"t%d" % i) for i in range(200)] + [("bad", b"bad"), ("none", b"none")]
    results = serve_streamed(service, tmp_path, tasks)
    assert [r.task_id for r in results] == [task_id for task_id, _ in tasks]
    assert [r.output for r in results[:200]] == [b"T%d" % i for i in range(200)]
    assert results[200].return_code == -1 and results[200].message == "ValueError: bad input"
    assert results[201].return_code == 0 and not results[201].HasField("output")
    invoked = [c[1].task_id for c in service.calls if c[0] == "invoke"]
    assert invoked == [task_id for task_id, _ in tasks]
    # Every task ran on the one runner thread (no thread hop per task); enter ran elsewhere.
    assert "flame-task-runner" in service.threads
    assert len(service.threads - {"flame-task-runner"}) == 1  # the one that ran on_session_enter


def test_streamed_invoke_awaits_an_async_service(tmp_path: Path) -> None:
    results = serve_streamed(AsyncEcho(), tmp_path, [("1", b"a"), ("2", b"bad"), ("3", b"c")])
    assert [(r.task_id, r.return_code, r.output) for r in results] == [
        ("1", 0, b"async:a"),
        ("2", -1, b""),
        ("3", 0, b"async:c"),
    ]
    assert results[1].message == "KeyError: 'missing'"


def test_a_result_batch_carries_each_result_with_exactly_its_fields() -> None:
    results = [
        Result("1", 0, b"out"),
        Result("2", 0, b""),  # an empty output is still an output
        Result("3", 0),  # None: no output at all
        Result("4", -1, message="ValueError: bad input"),
    ]
    batch = result_batch(results)
    assert [(r.task_id, r.return_code) for r in batch.results] == [("1", 0), ("2", 0), ("3", 0), ("4", -1)]
    assert [r.output if r.HasField("output") else None for r in batch.results] == [b"out", b"", None, None]
    assert [r.message if r.HasField("message") else None for r in batch.results] == [None] * 3 + [
        "ValueError: bad input"
    ]
