"""Decision.unmet: executors sessions want beyond what the registered nodes can give (what providers add)."""

from __future__ import annotations

from flame.session_manager.scheduler import plan
from flame.types import ExecutorState, ResourceRequirement
from tests.unit.test_scheduler_plan import executor, node, session, snap

X = ExecutorState


def test_no_nodes_all_demand_is_unmet() -> None:
    decision = plan(snap([session("a", pending=5), session("b", pending=2, max_instances=1)], [], []))
    assert decision.unmet == {"a": 5, "b": 1}
    assert decision.actions == []
    assert decision.unplaceable == {}  # no node at all is not "fits no node": a provider may add one


def test_room_on_nodes_is_used_first_and_only_the_rest_is_unmet() -> None:
    decision = plan(snap([session("a", pending=10)], [], [node("n1", cpu=4)]))
    assert len(decision.actions) == 4
    assert decision.unmet == {"a": 6}


def test_held_executors_count_and_sessions_served_in_full_are_left_out() -> None:
    executors = [executor(f"e{i}", X.BOUND, "a", busy=1) for i in range(3)]
    decision = plan(snap([session("a", pending=1, running=3), session("b", pending=1)], executors, [node(cpu=8)]))
    assert decision.unmet == {}
    decision = plan(snap([session("a", pending=6, running=3)], executors, [node(cpu=4)]))
    assert decision.unmet == {"a": 5}  # 9 wanted, 3 held, 1 created


def test_closed_and_given_up_sessions_want_nothing() -> None:
    sessions = [session("a", pending=3, open=False), session("b", pending=3, schedulable=False)]
    assert plan(snap(sessions, [], [])).unmet == {}


def test_min_instances_are_wanted_without_tasks() -> None:
    assert plan(snap([session("a", min_instances=2)], [], [])).unmet == {"a": 2}


def test_shape_no_node_fits_is_unmet_and_reported() -> None:
    big = ResourceRequirement(cpu=16, memory=1024)
    decision = plan(snap([session("a", pending=2, resreq=big)], [], [node(cpu=4)]))
    assert decision.unmet == {"a": 2}
    assert "a" in decision.unplaceable


def test_cluster_executor_limit_caps_unmet_in_serving_order() -> None:
    sessions = [session("a", pending=5, priority=1), session("b", pending=5)]
    decision = plan(snap(sessions, [executor("e1", X.BOUND, "a", busy=1)], [node(cpu=1)], max_executors=4))
    assert decision.unmet == {"a": 3}  # 4 allowed, 1 exists: the higher tier's 3 first, none left for b
    assert sum(decision.unmet.values()) + 1 <= 4
