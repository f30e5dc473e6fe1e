"""The client SDK against a fake Frontend + FrontendExt servicer (no session manager needed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

import flame
from flame.client import _default, _pipeline
from flame.client._endpoint import _resolve_endpoint, parse_endpoint
from flame.client._specs import application_spec
from flame.errors import AlreadyExists, FlameError, InvalidArgument, InvalidState, NotFound, TaskFailed, Unavailable
from flame.protocol import (
    application_spec_from_pb,
    application_to_pb,
    executor_to_pb,
    ext_pb2,
    ext_pb2_grpc,
    frontend_pb2_grpc,
    node_to_pb,
    session_spec_from_pb,
    session_to_pb,
    task_to_pb,
    types_pb2,
)
from flame.types import (
    Application,
    ApplicationSpec,
    Event,
    Executor,
    ExecutorState,
    Node,
    ResourceRequirement,
    SessionState,
    Shim,
    Task,
    TaskState,
)
from flame.types import Session as SessionInfo

DEADLINE = 20.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.005)


async def until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


# -- the fake cluster ---------------------------------------------------------------------------


@dataclass
class FakeSession:
    info: SessionInfo
    tasks: dict[str, Task] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)
    watchers: list[asyncio.Queue[Any]] = field(default_factory=list)


class FakeCluster(frontend_pb2_grpc.FrontendServicer, ext_pb2_grpc.FrontendExtServicer):  # type: ignore[misc]
    """Tasks complete at once: output = input.upper(); input b"fail..." fails; b"hold..." waits for release()."""

    def __init__(self) -> None:
        self.apps: dict[str, Application] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.submit_calls = 0
        self.stream_submits = True
        self.submitted = 0
        self.watch_requests: list[bool] = []  # include_completed of each WatchSession call
        self.deliver_early = False  # push results to watchers before answering SubmitTasks
        self.watch_unavailable = False  # refuse WatchSession with UNAVAILABLE (a restarting server)
        self.acknowledge_watch = True  # send initial metadata once a WatchSession stream is registered

    # helpers
    def _session(self, session_id: str) -> FakeSession:
        if session_id not in self.sessions:
            raise KeyError(session_id)
        return self.sessions[session_id]

    def _finish(self, fake: FakeSession, task: Task, state: TaskState, output: bytes | None, message: str) -> None:
        task.state, task.output = state, output
        counter = {TaskState.SUCCEED: "succeed", TaskState.FAILED: "failed", TaskState.CANCELLED: "cancelled"}[state]
        setattr(fake.info, counter, getattr(fake.info, counter) + 1)
        task.events.append(Event(code=int(state), message=message))
        task.completion_time = task.creation_time
        fake.completed.append(task.id)
        for queue in fake.watchers:
            queue.put_nowait(task)

    def _run(self, fake: FakeSession, task: Task) -> None:
        data = task.input or b""
        task.events.append(Event(code=int(TaskState.RUNNING), message="running"))
        if data.startswith(b"hold"):
            task.state = TaskState.RUNNING
        elif data.startswith(b"fail"):
            self._finish(fake, task, TaskState.FAILED, None, f"ValueError: cannot handle {data.decode()}")
        else:
            self._finish(fake, task, TaskState.SUCCEED, data.upper(), "done")

    def release(self, session_id: str) -> None:
        """Complete the held tasks of a session (call on the fake's loop)."""
        fake = self.sessions[session_id]
        for task in fake.tasks.values():
            if not task.state.is_final:
                self._finish(fake, task, TaskState.SUCCEED, b"RELEASED", "released")

    def drop_streams(self) -> None:
        """End every WatchSession stream with UNAVAILABLE (call on the fake's loop)."""
        for fake in self.sessions.values():
            for queue in fake.watchers:
                queue.put_nowait("drop")

    # Frontend
    async def RegisterApplication(self, request: Any, context: Any) -> Any:
        if request.name in self.apps:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"application {request.name} exists")
        self.apps[request.name] = Application(request.name, application_spec_from_pb(request.application))
        return types_pb2.Result(return_code=0)

    async def UpdateApplication(self, request: Any, context: Any) -> Any:
        if request.name not in self.apps:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"application {request.name} not found")
        self.apps[request.name].spec = application_spec_from_pb(request.application)
        return types_pb2.Result(return_code=0)

    async def UnregisterApplication(self, request: Any, context: Any) -> Any:
        if self.apps.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"application {request.name} not found")
        return types_pb2.Result(return_code=0)

    async def GetApplication(self, request: Any, context: Any) -> Any:
        if request.name not in self.apps:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"application {request.name} not found")
        return application_to_pb(self.apps[request.name])

    async def ListApplication(self, request: Any, context: Any) -> Any:
        return types_pb2.ApplicationList(applications=[application_to_pb(a) for a in self.apps.values()])

    async def ListExecutor(self, request: Any, context: Any) -> Any:
        executor = Executor("e1", "node1", ResourceRequirement(1, 1024), state=ExecutorState.IDLE)
        return types_pb2.ExecutorList(executors=[executor_to_pb(executor)])

    async def ListNodes(self, request: Any, context: Any) -> Any:
        node = Node("node1", ResourceRequirement(2, 4096), ResourceRequirement(2, 4096))
        return types_pb2.NodeList(nodes=[node_to_pb(node)])

    async def CreateSession(self, request: Any, context: Any) -> Any:
        spec = session_spec_from_pb(request.session)
        if spec.application not in self.apps:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"application {spec.application} not found")
        if request.session_id in self.sessions:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"session {request.session_id} exists")
        self.sessions[request.session_id] = FakeSession(SessionInfo(request.session_id, spec))
        return session_to_pb(self.sessions[request.session_id].info)

    async def OpenSession(self, request: Any, context: Any) -> Any:
        if request.session_id not in self.sessions:
            if not request.HasField("session"):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} not found")
            return await self.CreateSession(request, context)
        return session_to_pb(self.sessions[request.session_id].info)

    async def GetSession(self, request: Any, context: Any) -> Any:
        if request.session_id not in self.sessions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} not found")
        return session_to_pb(self.sessions[request.session_id].info)

    async def ListSession(self, request: Any, context: Any) -> Any:
        return types_pb2.SessionList(sessions=[session_to_pb(s.info) for s in self.sessions.values()])

    async def CloseSession(self, request: Any, context: Any) -> Any:
        fake = self.sessions.get(request.session_id)
        if fake is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} not found")
        assert fake is not None
        if fake.info.state == SessionState.CLOSED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"session {request.session_id} is closed")
        fake.info.state = SessionState.CLOSED
        for task in fake.tasks.values():
            if not task.state.is_final:
                self._finish(fake, task, TaskState.CANCELLED, None, "session closed")
        for queue in fake.watchers:
            queue.put_nowait(None)
        return session_to_pb(fake.info)

    async def CreateTask(self, request: Any, context: Any) -> Any:
        fake = self.sessions[request.task.session_id]
        task = Task(fake.info.id, str(fake.info.next_task_id), input=request.task.input)
        fake.info.next_task_id += 1
        fake.tasks[task.id] = task
        self._run(fake, task)
        return task_to_pb(task)

    async def GetTask(self, request: Any, context: Any) -> Any:
        task = self.sessions[request.session_id].tasks.get(request.task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id} not found")
        assert task is not None
        return task_to_pb(task)

    async def ListTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for task in self.sessions[request.session_id].tasks.values():
            yield task_to_pb(task)

    async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield task_to_pb(self.sessions[request.session_id].tasks[request.task_id])

    # FrontendExt
    async def SubmitTasks(self, request: Any, context: Any) -> Any:
        fake = self.sessions.get(request.session_id)
        if fake is None or fake.info.state == SessionState.CLOSED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"session {request.session_id} is not open")
        return await self._submit(request)

    async def SubmitStream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        if not self.stream_submits:  # a server from before SubmitStream
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        await context.send_initial_metadata(())
        async for request in requests:
            fake = self.sessions.get(request.session_id)
            if fake is None or fake.info.state == SessionState.CLOSED:
                code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
                yield ext_pb2.SubmitReply(code=code, message=f"session {request.session_id} is not open")
                continue
            response = await self._submit(request)
            yield ext_pb2.SubmitReply(first_task_id=response.first_task_id, count=response.count)

    async def _submit(self, request: Any) -> Any:
        fake = self.sessions[request.session_id]
        self.submit_calls += 1
        self.submitted += len(request.inputs)
        first = fake.info.next_task_id
        fake.info.next_task_id += len(request.inputs)
        tasks = [Task(fake.info.id, str(first + i), input=data) for i, data in enumerate(request.inputs)]
        fake.tasks.update((t.id, t) for t in tasks)

        def run_all() -> None:
            for task in tasks:
                self._run(fake, task)

        if self.deliver_early:
            run_all()
            await asyncio.sleep(0.05)  # let the stream carry the results before this answer
        else:
            asyncio.get_running_loop().call_soon(run_all)
        return ext_pb2.SubmitTasksResponse(first_task_id=first, count=len(tasks))

    async def WatchSession(self, request: Any, context: Any) -> AsyncIterator[Any]:
        fake = self.sessions.get(request.session_id)
        if fake is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} not found")
        assert fake is not None
        self.watch_requests.append(request.include_completed)
        if self.watch_unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        fake.watchers.append(queue)
        if self.acknowledge_watch:
            await context.send_initial_metadata(())  # the stream is registered: the client may submit
        try:
            if request.include_completed:
                done = [task_to_pb(fake.tasks[i], with_input=False) for i in fake.completed]
                if done:
                    yield ext_pb2.TaskBatch(tasks=done)
            if fake.info.state == SessionState.CLOSED:
                return
            while True:
                items = [await queue.get()]
                while not queue.empty() and len(items) < 1000:
                    items.append(queue.get_nowait())
                tasks = [task_to_pb(t, with_input=False) for t in items if isinstance(t, Task)]
                if tasks:
                    yield ext_pb2.TaskBatch(tasks=tasks)
                if "drop" in items:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
                if None in items:
                    return
        finally:
            fake.watchers.remove(queue)


async def start_fake(fake: FakeCluster) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    frontend_pb2_grpc.add_FrontendServicer_to_server(fake, server)
    ext_pb2_grpc.add_FrontendExtServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def fake_cluster() -> AsyncIterator[tuple[FakeCluster, str]]:
    """The fake on the current event loop (for async tests)."""
    fake = FakeCluster()
    fake.apps["echo"] = Application("echo", ApplicationSpec(command="echo"))
    server, endpoint = await start_fake(fake)
    try:
        yield fake, endpoint
    finally:
        await server.stop(None)


class ThreadedFake:
    """The fake on its own event-loop thread (for blocking-API tests)."""

    def __init__(self) -> None:
        self.fake = FakeCluster()
        self.fake.apps["echo"] = Application("echo", ApplicationSpec(command="echo"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.endpoint = self.call(start_fake(self.fake))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def run_on_loop(self, fn: Callable[[], None]) -> None:
        async def body() -> None:
            fn()

        self.call(body())

    def stop(self) -> None:
        self.call(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)
        self.loop.close()


@pytest.fixture
def cluster() -> Iterator[ThreadedFake]:
    threaded = ThreadedFake()
    yield threaded
    threaded.stop()


@pytest.fixture
def conn(cluster: ThreadedFake) -> Iterator[flame.Connection]:
    connection = flame.connect(cluster.endpoint, timeout=5)
    yield connection
    connection.close()


# -- blocking API -------------------------------------------------------------------------------


def test_sync_run_invoke_and_as_completed(conn: flame.Connection, cluster: ThreadedFake) -> None:
    with conn.create_session("echo", b"shared", session_id="s1") as session:
        assert (session.id, session.application, session.state) == ("s1", "echo", flame.SessionState.OPEN)
        assert session.common_data() == b"shared"
        assert session.invoke(b"hello") == b"HELLO"
        futures = {session.run(f"task {i}".encode()): i for i in range(200)}
        results = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures, timeout=DEADLINE)}
    assert results == {i: f"TASK {i}".encode() for i in range(200)}
    assert cluster.fake.sessions["s1"].info.state == SessionState.CLOSED
    with pytest.raises(InvalidState, match="closed"):
        session.run(b"late")


def test_task_failed_carries_message_session_and_task(conn: flame.Connection) -> None:
    with conn.create_session("echo", session_id="s-fail") as session:
        future = session.run(b"fail please")
        with pytest.raises(TaskFailed) as caught:
            future.result(DEADLINE)
        with pytest.raises(TaskFailed, match="cannot handle fail again"):
            session.invoke(b"fail again")
    error = caught.value
    assert error.message == "ValueError: cannot handle fail please"
    assert (error.session_id, error.task_id) == ("s-fail", "1")


def test_ten_thousand_tasks_use_one_stream_and_few_submit_calls(conn: flame.Connection, cluster: ThreadedFake) -> None:
    session = conn.create_session("echo")
    futures = [session.run(b"x%d" % i) for i in range(10_000)]
    _, not_done = concurrent.futures.wait(futures, timeout=DEADLINE)
    assert not not_done
    assert [f.result() for f in futures] == [b"X%d" % i for i in range(10_000)]
    session.close()
    assert cluster.fake.watch_requests == [True]  # one WatchSession stream for all 10,000 results
    assert cluster.fake.submitted == 10_000
    assert cluster.fake.submit_calls <= 1_000, cluster.fake.submit_calls  # batched, not one call per task


def test_threads_do_not_grow_with_outstanding_tasks(conn: flame.Connection, cluster: ThreadedFake) -> None:
    session = conn.create_session("echo", session_id="s-hold")
    assert session.invoke(b"warm up") == b"WARM UP"
    baseline = threading.active_count()
    futures = [session.run(b"hold") for _ in range(10_000)]
    wait_for(lambda: cluster.fake.submitted == 10_001)
    assert threading.active_count() <= baseline
    assert not any(f.done() for f in futures)
    session.close()  # the cluster cancels the held tasks
    for future in concurrent.futures.as_completed(futures, timeout=DEADLINE):
        with pytest.raises(TaskFailed, match="task was cancelled: session closed"):
            future.result()
    assert threading.active_count() <= baseline


def test_module_functions_use_a_default_connection(cluster: ThreadedFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_ENDPOINT", cluster.endpoint)
    _default._close_default()
    try:
        flame.register_application(
            "pi", {"command": "python", "arguments": ["-m", "pi"], "environments": {"A": "1"}, "shim": "host"}
        )
        app = flame.get_application("pi")
        assert app is not None and app.spec.arguments == ["-m", "pi"] and app.spec.environments == {"A": "1"}
        assert flame.get_application("missing") is None
        assert sorted(a.name for a in flame.list_applications()) == ["echo", "pi"]
        session = flame.create_session("pi", b"data", resreq="cpu=1,mem=1g", min_instances=1, max_instances=4)
        assert session.invoke(b"abc") == b"ABC"
        spec = cluster.fake.sessions[session.id].info.spec
        assert (spec.resreq, spec.min_instances, spec.max_instances) == (ResourceRequirement(1, 1024**3), 1, 4)
        assert session.id.startswith("pi-")
        assert [s.id for s in flame.list_sessions()] == [session.id]
        assert flame.get_session(session.id).succeed == 1
        assert flame.close_session(session.id).state == flame.SessionState.CLOSED
        with pytest.raises(InvalidState):
            session.invoke(b"after close")
        assert [e.id for e in flame.list_executors()] == ["e1"]
        assert flame.list_executors()[0].state == ExecutorState.IDLE
        assert [(n.name, n.capacity.cpu) for n in flame.list_nodes()] == [("node1", 2)]
        flame.unregister_application("pi")
        assert flame.get_application("pi") is None
    finally:
        _default._close_default()


def test_rpc_errors_map_to_flame_errors(conn: flame.Connection) -> None:
    with pytest.raises(NotFound, match="application nope not found"):
        conn.create_session("nope")
    with pytest.raises(NotFound, match="get session missing"):
        conn.get_session("missing")
    conn.register_application("twice", ApplicationSpec(command="x"))
    with pytest.raises(AlreadyExists):
        conn.register_application("twice", {"command": "x"})
    conn.create_session("echo", session_id="s-dup").close()
    with pytest.raises(AlreadyExists):
        conn.create_session("echo", session_id="s-dup")
    with pytest.raises(InvalidState, match="is closed"):
        conn.close_session("s-dup")
    with pytest.raises(FlameError):
        conn.unregister_application("never-registered")


def test_bad_arguments_are_refused_before_any_call(conn: flame.Connection) -> None:
    with pytest.raises(InvalidArgument, match="accepted keys are shim, description, labels"):
        conn.register_application("x", {"command": "x", "cmd": "y"})
    with pytest.raises(InvalidArgument, match="common_data must be bytes"):
        conn.create_session("echo", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown resource"):
        conn.create_session("echo", resreq="cpu=1,disk=2")
    with pytest.raises(InvalidArgument, match="max_instances"):
        conn.create_session("echo", min_instances=3, max_instances=1)
    session = conn.create_session("echo")
    with pytest.raises(InvalidArgument, match=r"task input must be bytes, got str \(encode text first"):
        session.run("text")  # type: ignore[arg-type]
    session.close()


def test_flamepy_style_single_task_methods(conn: flame.Connection) -> None:
    session = conn.create_session("echo")
    task = session.create_task(b"one")
    assert (task.id, task.session_id) == ("1", session.id)
    assert session.get_task("1").output == b"ONE"
    assert [t.state for t in session.watch_task("1")] == [TaskState.SUCCEED]
    assert [t.id for t in session.list_tasks()] == ["1"]
    with pytest.raises(NotFound):
        session.get_task("99")
    session.close()


def test_unreachable_endpoint_names_it_and_says_how_to_start_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        flame.connect(f"127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - started < 4  # a refused connection fails at once, not at the timeout
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "flame up" in caught.value.message


def test_rpcs_after_the_cluster_went_away_raise_unavailable(cluster: ThreadedFake) -> None:
    connection = flame.connect(cluster.endpoint, timeout=5)
    try:
        cluster.call(cluster.server.stop(None))
        with pytest.raises(Unavailable, match="flame up"):
            connection.list_sessions()
    finally:
        connection.close()
    with pytest.raises(InvalidState, match="closed"):
        connection.list_sessions()


def test_endpoint_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAME_ENDPOINT", raising=False)
    monkeypatch.delenv("FLAME_CA_FILE", raising=False)
    assert _resolve_endpoint().target == "127.0.0.1:8080"
    monkeypatch.setenv("FLAME_ENDPOINT", "https://flame.example:9443")
    resolved = _resolve_endpoint()
    assert (resolved.target, resolved.secure) == ("flame.example:9443", True)
    assert _resolve_endpoint("10.0.0.1:7000").target == "10.0.0.1:7000"
    assert parse_endpoint("http://sm").target == "sm:8080"
    assert parse_endpoint("[::1]:8080").target == "[::1]:8080"
    for bad in ("ftp://sm:1", "http://sm:notaport", "http://sm:80/path", "http://"):
        with pytest.raises(InvalidArgument, match="endpoint"):
            parse_endpoint(bad)


def test_application_dicts_take_flamepy_keys() -> None:
    spec = application_spec(
        {
            "shim": Shim.HOST,
            "image": None,
            "description": "d",
            "labels": ["a"],
            "command": "python",
            "arguments": ["-m", "x"],
            "environments": {"K": "V"},
            "working_directory": "/tmp",
            "max_instances": 3,
            "delay_release": 10,
            "schema": {"input": "string"},
            "url": "file:///x",
            "installer": "pip",
        }
    )
    assert spec.command == "python" and spec.environments == {"K": "V"} and spec.schema is not None
    assert (spec.max_instances, spec.delay_release, spec.image, spec.installer) == (3, 10, None, "pip")
    assert application_spec({"shim": "wasm"}).shim == Shim.WASM
    for bad, match in (
        ({"shim": "docker"}, "accepted values are host, wasm"),
        ({"arguments": "-m x"}, "list of strings"),
        ({"environments": {"K": 1}}, "dict of string to string"),
        ({"max_instances": -1}, "max_instances"),
        ({"schema": {"inputs": "x"}}, "schema"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            application_spec(bad)


# -- async API ----------------------------------------------------------------------------------


def test_async_api_batches_concurrent_submits() -> None:
    async def main() -> None:
        async with fake_cluster() as (fake, endpoint), await flame.AsyncConnection.connect(endpoint) as conn:
            session = await conn.create_session("echo", session_id="a1")
            assert await session.run(b"one") == b"ONE"
            outputs = await asyncio.gather(*(session.submit(b"t%d" % i) for i in range(1000)))
            assert outputs == [b"T%d" % i for i in range(1000)]
            assert fake.submit_calls <= 3  # the first call plus everything queued meanwhile
            with pytest.raises(TaskFailed, match="cannot handle fail"):
                await session.run(b"fail")
            await session.refresh()
            assert session.state == SessionState.OPEN
            async with await conn.open_session("a1") as again:
                assert again.id == "a1"
            assert session.closed is False  # another object closed it; this snapshot is old
            await session.refresh()
            assert session.closed
            assert fake.watch_requests == [True]  # a fresh session: the replay is empty, so it is asked for

    asyncio.run(main())


def test_results_that_beat_the_submit_answer_are_not_lost() -> None:
    async def main() -> None:
        async with fake_cluster() as (fake, endpoint):
            fake.deliver_early = True
            async with await flame.AsyncConnection.connect(endpoint, timeout=5) as conn:
                async with await conn.create_session("echo") as session:
                    first = await asyncio.wait_for(session.run(b"a"), DEADLINE)
                    rest = await asyncio.wait_for(asyncio.gather(*(session.submit(b"b%d" % i) for i in range(50))), 5)
                assert (first, rest) == (b"A", [b"B%d" % i for i in range(50)])

    asyncio.run(main())


def test_result_stream_reconnects_and_replays_completed_tasks_once() -> None:
    async def main() -> None:
        async with fake_cluster() as (fake, endpoint), await flame.AsyncConnection.connect(endpoint) as conn:
            session = await conn.create_session("echo", session_id="r1")
            assert await session.run(b"before") == b"BEFORE"
            held = [session.submit(b"hold") for _ in range(3)]
            await until(lambda: fake.submitted == 4)
            fake.watch_unavailable = True
            fake.drop_streams()
            await until(lambda: len(fake.watch_requests) >= 3)  # retrying while tasks are outstanding
            fake.release("r1")  # the tasks finish while no stream is open
            fake.watch_unavailable = False
            outputs = await asyncio.wait_for(asyncio.gather(*held), DEADLINE)
            assert outputs == [b"RELEASED"] * 3  # from the replay of completed tasks
            assert all(fake.watch_requests)  # the first (fresh session) and every reconnect replay
            assert await session.run(b"after") == b"AFTER"
            await session.close()

    asyncio.run(main())


@pytest.mark.parametrize("acknowledge", [True, False])
def test_a_session_with_history_skips_the_replay_and_waits_for_the_stream(
    acknowledge: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_pipeline, "WATCH_ACK_TIMEOUT", 0.2)

    async def main() -> None:
        async with fake_cluster() as (fake, endpoint), await flame.AsyncConnection.connect(endpoint) as conn:
            fake.acknowledge_watch = acknowledge
            first = await conn.create_session("echo", session_id="h1")
            assert await first.run(b"earlier") == b"EARLIER"
            again = await conn.get_session("h1")
            assert again.succeed == 1
            assert await asyncio.wait_for(again.run(b"later"), DEADLINE) == b"LATER"
            assert fake.watch_requests == [True, False]  # no replay of the finished task

    asyncio.run(main())
    warned = "not acknowledged" in caplog.text
    assert warned is not acknowledge


def test_closing_the_connection_fails_outstanding_futures() -> None:
    async def main() -> None:
        async with fake_cluster() as (fake, endpoint):
            conn = await flame.AsyncConnection.connect(endpoint, timeout=5)
            session = await conn.create_session("echo", session_id="c1")
            held = session.submit(b"hold")
            await until(lambda: fake.submitted == 1)
            await conn.close()
            with pytest.raises(InvalidState, match=r"connection .* was closed"):
                await held
            with pytest.raises(InvalidState, match="closed"):
                session.submit(b"more")
            assert fake.sessions["c1"].info.state == SessionState.OPEN  # detached, not closed

    asyncio.run(main())


@pytest.mark.parametrize("stream_submits", [True, False], ids=["submit stream", "server without SubmitStream"])
def test_tasks_one_at_a_time_run_over_either_submit_path(
    conn: flame.Connection, cluster: ThreadedFake, stream_submits: bool
) -> None:
    cluster.fake.stream_submits = stream_submits
    session = conn.create_session("echo")
    assert [session.run(b"t%d" % i).result(DEADLINE) for i in range(20)] == [b"T%d" % i for i in range(20)]
    assert cluster.fake.submitted == 20
    cluster.fake.sessions[session.id].info.state = SessionState.CLOSED  # closed behind the client's back
    with pytest.raises(flame.InvalidState, match="is not open"):
        session.run(b"late").result(DEADLINE)
    assert cluster.fake.submitted == 20
