"""Scheduling v1 on hand-built snapshots (no I/O)."""

from __future__ import annotations

from flame.session_manager.scheduler import (
    BindExecutor,
    CreateExecutor,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    SessionView,
    Snapshot,
    UnbindExecutor,
    plan,
)
from flame.types import ExecutorState, ResourceRequirement

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


def creates(actions: list[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in actions:
        if isinstance(a, CreateExecutor):
            counts[a.session_id] = counts.get(a.session_id, 0) + 1
    return counts


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
    assert decision.actions == [ReleaseExecutor("small"), CreateExecutor("n1", "s", big)]


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
