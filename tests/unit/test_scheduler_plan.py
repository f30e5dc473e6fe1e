"""Scheduling on hand-built snapshots (no I/O): the basics, and helpers the other scheduler tests share."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from flame.session_manager.core import ControllerSettings, Core
from flame.session_manager.effects import ApplyDecision
from flame.session_manager.scheduler import (
    Action,
    BindExecutor,
    CreateExecutor,
    Decision,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    Scheduler,
    SessionView,
    Snapshot,
    UnbindExecutor,
    plan,
)
from flame.types import ExecutorState, ResourceRequirement

X = ExecutorState

SLOT = ResourceRequirement(cpu=1, memory=1024)
NOW = 1_000_000


def node(name: str = "n1", cpu: int = 8, slots: int = 0) -> NodeView:
    return NodeView(name=name, allocatable=ResourceRequirement(cpu=cpu, memory=cpu * 1024), max_executors=slots)


def session(sid: str, pending: int = 0, running: int = 0, **kw: object) -> SessionView:
    fields: dict[str, object] = {
        "application": "app",
        "priority": 0,
        "min_instances": 0,
        "max_instances": None,
        "resreq": SLOT,
        "creation_time": 0,
    }
    fields.update(kw)
    return SessionView(id=sid, pending=pending, running=running, **fields)  # type: ignore[arg-type]


def executor(eid: str, state: ExecutorState, sid: str | None = None, **kw: object) -> ExecutorView:
    fields: dict[str, object] = {"node": "n1", "resreq": SLOT, "application": "app", "idle_since": NOW}
    fields.update(kw)
    return ExecutorView(id=eid, state=state, session_id=sid, **fields)  # type: ignore[arg-type]


def snap(sessions: list[SessionView], executors: list[ExecutorView], nodes: list[NodeView], **kw: object) -> Snapshot:
    return Snapshot(now=NOW, sessions=tuple(sessions), executors=tuple(executors), nodes=tuple(nodes), **kw)  # type: ignore[arg-type]


def creates(actions: Iterable[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in actions:
        if isinstance(a, CreateExecutor):
            counts[a.session_id] = counts.get(a.session_id, 0) + 1
    return counts


def of_type(actions: Iterable[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


@dataclass
class Model:
    """A toy fleet for multi-cycle tests: each cycle, executors finish the step they were told to take.

    Binding becomes Bound, Unbinding becomes Idle, Releasing disappears. A bound executor is
    busy while its session has pending tasks (pending never drains unless a test changes it).
    """

    nodes: list[NodeView]
    sessions: dict[str, SessionView]
    executors: dict[str, ExecutorView] = field(default_factory=dict)
    now: int = NOW
    max_executors: int | None = None
    idle_release_ms: int = 5_000
    interval_ms: int = 500
    history: list[Decision] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def snapshot(self) -> Snapshot:
        busy: dict[str, int] = {}
        for e in self.executors.values():
            if e.busy and e.session_id:
                busy[e.session_id] = busy.get(e.session_id, 0) + 1
        sessions = tuple(s._replace(running=busy.get(s.id, 0)) for s in self.sessions.values())
        return Snapshot(
            self.now,
            sessions,
            tuple(self.executors.values()),
            tuple(self.nodes),
            max_executors=self.max_executors,
            idle_release_ms=self.idle_release_ms,
        )

    def cycle(self, scheduler: Scheduler | None = None) -> Decision:
        """Plan on the current state, apply the actions, then let one interval pass."""
        decision = (scheduler or Scheduler()).plan(self.snapshot())
        self.history.append(decision)
        self.apply(decision.actions)
        self.advance()
        return decision

    def apply(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, CreateExecutor):
                eid = f"x{next(self._ids)}"
                app = self.sessions[a.session_id].application
                self.executors[eid] = ExecutorView(eid, a.node, X.BINDING, a.resreq, a.session_id, app, 0, self.now)
            elif isinstance(a, BindExecutor):
                e = self.executors[a.executor_id]
                assert e.state == X.IDLE, f"bind of a {e.state.name} executor"
                app = self.sessions[a.session_id].application
                self.executors[e.id] = e._replace(state=X.BINDING, session_id=a.session_id, application=app)
            elif isinstance(a, UnbindExecutor):
                e = self.executors[a.executor_id]
                assert e.state == X.BOUND, f"unbind of a {e.state.name} executor"
                self.executors[e.id] = e._replace(state=X.UNBINDING, session_id=None)
            elif isinstance(a, ReleaseExecutor):
                e = self.executors[a.executor_id]
                assert e.state not in (X.RELEASING, X.RELEASED), f"release of a {e.state.name} executor"
                self.executors[e.id] = e._replace(state=X.RELEASING)

    def advance(self) -> None:
        self.now += self.interval_ms
        for e in list(self.executors.values()):
            if e.state == X.BINDING:
                e = e._replace(state=X.BOUND, idle_since=self.now)
            elif e.state == X.UNBINDING:
                e = e._replace(state=X.IDLE, idle_since=self.now, busy=0)
            elif e.state == X.RELEASING:
                del self.executors[e.id]
                continue
            if e.state == X.BOUND and e.session_id is not None:
                session = self.sessions.get(e.session_id)
                working = session is not None and session.pending > 0
                if e.busy and not working:
                    e = e._replace(busy=0, idle_since=self.now)
                elif working:
                    e = e._replace(busy=1)
            self.executors[e.id] = e

    def held(self, sid: str, states: tuple[ExecutorState, ...] = (X.BINDING, X.BOUND)) -> int:
        return sum(1 for e in self.executors.values() if e.session_id == sid and e.state in states)

    def set_pending(self, sid: str, pending: int) -> None:
        self.sessions[sid] = self.sessions[sid]._replace(pending=pending)


def test_backlog_gets_executors_up_to_node_capacity() -> None:
    decision = plan(snap([session("s", pending=100)], [], [node(cpu=4)]))
    assert creates(decision.actions) == {"s": 4}


def test_demand_limits_executors() -> None:
    decision = plan(snap([session("s", pending=2)], [], [node(cpu=8)]))
    assert creates(decision.actions) == {"s": 2}


def test_max_instances_respected() -> None:
    decision = plan(snap([session("s", pending=50, max_instances=3)], [], [node(cpu=8)]))
    assert creates(decision.actions) == {"s": 3}


def test_node_slots_and_cluster_limit_respected() -> None:
    decision = plan(snap([session("s", pending=50)], [], [node(cpu=8, slots=5)]))
    assert creates(decision.actions) == {"s": 5}
    decision = plan(snap([session("s", pending=50)], [], [node(cpu=8)], max_executors=2))
    assert creates(decision.actions) == {"s": 2}


def test_equal_sessions_share_equally() -> None:
    decision = plan(snap([session("a", pending=50), session("b", pending=50)], [], [node(cpu=8)]))
    assert creates(decision.actions) == {"a": 4, "b": 4}


def test_higher_priority_served_first() -> None:
    sessions = [session("low", pending=50, priority=1), session("high", pending=50, priority=5)]
    decision = plan(snap(sessions, [], [node(cpu=8)]))
    assert creates(decision.actions) == {"high": 8}


def test_min_instances_kept_while_idle() -> None:
    decision = plan(snap([session("s", min_instances=2)], [], [node(cpu=8)]))
    assert creates(decision.actions) == {"s": 2}
    bound = [executor(f"e{i}", ExecutorState.BOUND, "s", idle_since=0) for i in range(2)]
    decision = plan(snap([session("s", min_instances=2)], bound, [node(cpu=8)]))
    assert decision.actions == []


def test_idle_executor_reused_before_creating() -> None:
    idle = [executor("warm", ExecutorState.IDLE)]
    decision = plan(snap([session("s", pending=1)], idle, [node(cpu=8)]))
    assert decision.actions == [BindExecutor("warm", "s")]


def test_bound_executor_unbinds_after_delay_release_only() -> None:
    ex = [executor("e1", ExecutorState.BOUND, "s", idle_since=NOW - 1_000)]
    assert plan(snap([session("s", delay_release_ms=5_000)], ex, [node()])).actions == []
    assert plan(snap([session("s", delay_release_ms=500)], ex, [node()])).actions == [UnbindExecutor("e1")]


def test_busy_executor_is_never_unbound() -> None:
    ex = [executor("e1", ExecutorState.BOUND, "s", idle_since=0, busy=1)]
    assert plan(snap([session("s", running=1)], ex, [node()])).actions == []


def test_closed_session_executors_unbind_when_idle() -> None:
    ex = [executor("e1", ExecutorState.BOUND, "s", idle_since=NOW)]
    decision = plan(snap([session("s", open=False)], ex, [node()]))
    assert decision.actions == [UnbindExecutor("e1")]


def test_idle_unbound_executor_released_after_grace() -> None:
    ex = [executor("e1", ExecutorState.IDLE, idle_since=NOW - 10_000)]
    assert plan(snap([], ex, [node()], idle_release_ms=5_000)).actions == [ReleaseExecutor("e1")]
    ex = [executor("e1", ExecutorState.IDLE, idle_since=NOW - 1_000)]
    assert plan(snap([], ex, [node()], idle_release_ms=5_000)).actions == []


def test_idle_executor_of_wrong_size_released_to_make_room() -> None:
    big = ResourceRequirement(cpu=2, memory=2048)
    ex = [executor("small", ExecutorState.IDLE)]
    decision = plan(snap([session("s", pending=1, resreq=big)], ex, [node(cpu=2)]))
    # The room is used once the executor is gone, never while it still occupies the node.
    assert decision.actions == [ReleaseExecutor("small")]
    releasing = [executor("small", ExecutorState.RELEASING)]
    assert plan(snap([session("s", pending=1, resreq=big)], releasing, [node(cpu=2)])).actions == []
    decision = plan(snap([session("s", pending=1, resreq=big)], [], [node(cpu=2)]))
    assert decision.actions == [CreateExecutor("n1", "s", big)]


def test_unplaceable_session_reported() -> None:
    huge = ResourceRequirement(cpu=64, memory=1024)
    decision = plan(snap([session("s", pending=1, resreq=huge)], [], [node(cpu=8)]))
    assert decision.actions == []
    assert "no node can hold" in decision.unplaceable["s"]


def test_unschedulable_session_gets_nothing() -> None:
    decision = plan(snap([session("s", pending=10, schedulable=False)], [], [node()]))
    assert decision.actions == []


def test_not_ready_node_not_used() -> None:
    down = NodeView(name="n1", allocatable=SLOT, ready=False)
    assert plan(snap([session("s", pending=1)], [], [down])).actions == []


def test_fast_scale_up_serves_every_session_in_one_cycle() -> None:
    sessions = [session(f"s{i}", pending=100, creation_time=i) for i in range(3)]
    decision = plan(snap(sessions, [], [node("a", cpu=16), node("b", cpu=16)]))
    assert creates(decision.actions) == {"s0": 11, "s1": 11, "s2": 10}  # the odd ones to the elders
    # spread: each node gets half
    per_node = [a.node for a in decision.actions if isinstance(a, CreateExecutor)]
    assert per_node.count("a") == per_node.count("b") == 16


def test_warm_reuse_prefers_same_application_then_new_then_other_application() -> None:
    idle = [
        executor("other", X.IDLE, application="other-app"),
        executor("same", X.IDLE, application="app"),
    ]
    # room for one new executor: same app first, then a new one; the other app's stays warm
    decision = plan(snap([session("s", pending=2)], idle, [node(cpu=3)]))
    assert decision.actions == [BindExecutor("same", "s"), CreateExecutor("n1", "s", SLOT)]
    # no room left: the other application's idle executor is rebound
    decision = plan(snap([session("s", pending=3)], idle, [node(cpu=2)]))
    assert decision.actions == [BindExecutor("same", "s"), BindExecutor("other", "s")]


def test_idle_executor_on_a_node_that_is_not_ready_is_not_bound() -> None:
    idle = [executor("far", X.IDLE, node="down")]
    nodes = [node("n1"), NodeView("down", ResourceRequirement(cpu=8, memory=8 * 1024), ready=False)]
    decision = plan(snap([session("s", pending=1)], idle, nodes))
    assert decision.actions == [CreateExecutor("n1", "s", SLOT)]


def test_memory_and_gpu_capacity_respected() -> None:
    gpu = ResourceRequirement(cpu=1, memory=1024, gpu=1)
    nodes = [NodeView("g", ResourceRequirement(cpu=8, memory=8 * 1024, gpu=2)), node("c", cpu=8)]
    decision = plan(snap([session("s", pending=10, resreq=gpu)], [], nodes))
    assert decision.actions == [CreateExecutor("g", "s", gpu)] * 2
    fat = ResourceRequirement(cpu=1, memory=3 * 1024)
    decision = plan(snap([session("s", pending=10, resreq=fat)], [], [node(cpu=8)]))
    assert creates(decision.actions) == {"s": 2}  # 8 GiB of memory holds two of 3 GiB


def test_cpu_only_executors_keep_off_gpu_nodes_while_others_have_room() -> None:
    nodes = [NodeView("g", ResourceRequirement(cpu=8, memory=8 * 1024, gpu=2)), node("c", cpu=4)]
    decision = plan(snap([session("s", pending=6)], [], nodes))
    placed = [a.node for a in decision.actions if isinstance(a, CreateExecutor)]
    assert placed.count("c") == 4 and placed.count("g") == 2


def test_unplaceable_reported_only_while_the_session_wants_executors() -> None:
    huge = ResourceRequirement(cpu=64, memory=1024)
    assert plan(snap([session("s", resreq=huge)], [], [node(cpu=8)])).unplaceable == {}
    reason = plan(snap([session("s", pending=1, resreq=huge)], [], [node(cpu=8)])).unplaceable["s"]
    assert "cpu=64" in reason and "largest node: cpu=8" in reason


def test_fleet_skips_actions_the_state_no_longer_allows(caplog: pytest.LogCaptureFixture) -> None:
    core = Core(ControllerSettings())
    stale = Decision(
        [
            CreateExecutor("gone-node", "gone-session", SLOT),
            BindExecutor("gone-executor", "gone-session"),
            UnbindExecutor("gone-executor"),
            ReleaseExecutor("gone-executor"),
        ]
    )
    assert not core.handle(ApplyDecision(stale))  # nothing raises or happens: each is skipped with a warning
    assert caplog.text.count("skipping") == 4
