"""An executor manager gone wrong: random, stale and out-of-order Backend messages.

The session manager must keep its state consistent (counters match the tasks, no executor
in two sessions) and keep serving.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame.protocol import backend_pb2, frontend_pb2, frontend_pb2_grpc, types_pb2
from tests.integration.test_frontend_fuzz import ControlPlane


class FakeAgent:
    """A raw Backend stream driven by the test."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.executors: set[str] = set()
        connect = channel.stream_stream(
            "/flame.backend.v1.Backend/Connect",
            request_serializer=backend_pb2.AgentMessage.SerializeToString,
            response_deserializer=backend_pb2.ManagerMessage.FromString,
        )
        register = backend_pb2.RegisterNode(name="fuzz-node", max_executors=4)
        register.capacity.cpu, register.capacity.memory = 4, 4 * 1024**3
        self.outgoing.put(backend_pb2.AgentMessage(register=register))
        self.responses = connect(iter(self.outgoing.get, None))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for message in self.responses:
                for item in (*message.create, *message.bind):
                    self.executors.add(item.executor_id)
        except grpc.RpcError as exc:
            self.ended = exc  # at teardown the channel closes under it; earlier, the test fails

    ended: grpc.RpcError | None = None

    def send(self, message: Any) -> None:
        self.outgoing.put(message)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, FakeAgent, Any]]:
    plane = ControlPlane(str(tmp_path_factory.mktemp("backend-fuzz")))
    channel = grpc.insecure_channel(plane.endpoint)
    frontend = frontend_pb2_grpc.FrontendStub(channel)
    frontend.RegisterApplication(
        frontend_pb2.RegisterApplicationRequest(name="bf-app", application=types_pb2.ApplicationSpec(command="x"))
    )
    frontend.CreateSession(
        frontend_pb2.CreateSessionRequest(session_id="bf", session=types_pb2.SessionSpec(application="bf-app"))
    )
    for _ in range(20):
        frontend.CreateTask(frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id="bf", input=b"x")))
    agent = FakeAgent(channel)
    try:
        yield plane, agent, frontend
    finally:
        agent.outgoing.put(None)
        channel.close()
        plane.stop()


def _consistent(sm: Any) -> str | None:
    c = sm.controller
    seen: dict[str, str] = {}
    for rec in c.sessions.values():
        # A finished task leaves memory once its state is stored, so the tasks in memory give the
        # unfinished counters exactly and the finished ones only a lower bound; all counters
        # together are every task the session ever got.
        counts = {name: 0 for name in ("pending", "running", "succeed", "failed", "cancelled")}
        for task in rec.tasks.values():
            counts[task.state.name.lower()] += 1
        actual = {name: getattr(rec.session, name) for name in counts}
        unfinished = ("pending", "running")
        if any(counts[n] != actual[n] for n in unfinished) or any(counts[n] > actual[n] for n in counts):
            return f"session {rec.id}: counters {actual} but tasks in memory say {counts}"
        if sum(actual.values()) != rec.session.next_task_id - 1:
            return f"session {rec.id}: counters {actual} add up to other than its {rec.session.next_task_id - 1} tasks"
        if len(rec.pending) != counts["pending"]:
            return f"session {rec.id}: {len(rec.pending)} queued but {counts['pending']} pending"
        for executor_id in rec.executors:
            if executor_id in seen:
                return f"executor {executor_id} in sessions {seen[executor_id]} and {rec.id}"
            seen[executor_id] = rec.id
            if c.executors[executor_id].executor.session_id != rec.id:
                return f"executor {executor_id} listed by session {rec.id} but bound to another"
    return None


# An executor is drawn as an index into the ids the session manager has handed out so far
# (resolved when sending, so the strategy does not depend on that changing list) or a stray id.
ids = st.one_of(st.integers(min_value=0, max_value=15), st.sampled_from(["e-unknown", ""]), st.text(max_size=8))
task_ids = st.sampled_from([str(i) for i in range(0, 23)])
states = st.integers(min_value=-1, max_value=9)


def _executor(choice: int | str, known: list[str]) -> str:
    if isinstance(choice, str):
        return choice
    return known[choice % len(known)] if known else "e-unknown"


@st.composite
def agent_messages(draw: st.DrawFn, known: list[str]) -> Any:
    executor = ids.map(lambda choice: _executor(choice, known))
    message = backend_pb2.AgentMessage(heartbeat=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        report = message.executors.add(executor_id=draw(executor), state=draw(states))
        if draw(st.booleans()):
            report.session_id = draw(st.sampled_from(["bf", "other", ""]))
        if draw(st.booleans()):
            report.message = draw(st.text(max_size=20))
    for _ in range(draw(st.integers(0, 4))):
        outcome = message.outcomes.add(
            executor_id=draw(executor),
            session_id=draw(st.sampled_from(["bf", "nope"])),
            task_id=draw(task_ids),
            state=draw(states),
            retryable=draw(st.booleans()),
            not_started=draw(st.booleans()),
        )
        if draw(st.booleans()):
            outcome.output = draw(st.binary(max_size=16))
    return message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_agent_messages_keep_state_consistent(backend: tuple[ControlPlane, FakeAgent, Any], data: Any) -> None:
    plane, agent, frontend = backend
    agent.send(data.draw(agent_messages(sorted(agent.executors))))
    agent.send(backend_pb2.AgentMessage(heartbeat=True))  # a barrier of sorts: handled in order
    assert plane.run(_consistent) is None
    assert frontend.GetSession(frontend_pb2.GetSessionRequest(session_id="bf")).metadata.id == "bf"
    assert agent.reader.is_alive(), f"the session manager ended the agent's stream: {agent.ended}"
