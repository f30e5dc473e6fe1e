"""Scheduling policies on hand-built snapshots: priority, DRF fair share, weights, proportion, names."""

from __future__ import annotations

import logging

import pytest

from flame.errors import InvalidArgument
from flame.session_manager.scheduler import POLICIES, NodeView, Scheduler
from flame.session_manager.scheduler.capacity import Pool
from flame.session_manager.scheduler.share import Claim, split
from flame.types import ResourceRequirement
from tests.unit.test_scheduler_plan import X, creates, executor, node, session, snap

GIB = 1024**3


def test_policy_names_are_flames_and_unknown_ones_are_refused() -> None:
    assert set(POLICIES) == {"priority", "fairshare", "proportion", "gang", "drf"}
    assert Scheduler(["drf", "fairshare", "priority"]).policies.names == ("drf", "priority")  # same policy once
    with pytest.raises(InvalidArgument, match="accepted: priority, fairshare, drf, proportion, gang"):
        Scheduler(["fifo"])


def test_gang_is_accepted_as_a_no_op_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        gang = Scheduler(["priority", "fairshare", "gang"])
    assert "'gang' is accepted for compatibility and has no effect" in caplog.text
    sessions = [session("a", pending=50), session("b", pending=50)]
    assert creates(gang.plan(snap(sessions, [], [node(cpu=8)])).actions) == {"a": 4, "b": 4}


# ---- priority -----------------------------------------------------------------------------


def test_lower_tier_gets_nothing_while_a_higher_tier_wants_the_whole_cluster() -> None:
    sessions = [session("low", pending=50, priority=1), session("high", pending=50, priority=5)]
    assert creates(Scheduler().plan(snap(sessions, [], [node(cpu=8)])).actions) == {"high": 8}


def test_lower_tier_gets_what_a_higher_tier_leaves() -> None:
    sessions = [session("low", pending=50, priority=1), session("high", pending=3, priority=5)]
    decision = Scheduler().plan(snap(sessions, [], [node(cpu=8)]))
    assert creates(decision.actions) == {"high": 3, "low": 5}
    assert decision.entitlements == {"high": 3.0, "low": 5.0}


def test_without_the_priority_policy_priorities_are_ignored() -> None:
    sessions = [session("low", pending=50, priority=1), session("high", pending=50, priority=5)]
    decision = Scheduler(["fairshare"]).plan(snap(sessions, [], [node(cpu=8)]))
    assert creates(decision.actions) == {"high": 4, "low": 4}


def test_higher_tier_newcomer_takes_the_full_cluster_from_a_lower_tier() -> None:
    bound = [executor(f"e{i}", X.BOUND, "low", busy=1) for i in range(8)]
    sessions = [session("low", pending=50, running=8), session("high", pending=50, priority=9)]
    decision = Scheduler().plan(snap(sessions, bound, [node(cpu=8)]))
    assert sorted(a.executor_id for a in decision.actions) == sorted(e.id for e in bound)  # all unbind
    assert {type(a).__name__ for a in decision.actions} == {"UnbindExecutor"}
    assert decision.entitlements["high"] == 8.0


# ---- fair share (DRF) ---------------------------------------------------------------------


def test_drf_equalises_dominant_shares() -> None:
    # The DRF paper's example: 9 cpus and 18 GiB; A's tasks need <1 cpu, 4 GiB>, B's <3 cpus, 1 GiB>.
    # Both end with a dominant share of 2/3: A three executors (12/18 memory), B two (6/9 cpu).
    big = NodeView("n1", ResourceRequirement(cpu=9, memory=18 * GIB))
    a = ResourceRequirement(cpu=1, memory=4 * GIB)
    b = ResourceRequirement(cpu=3, memory=1 * GIB)
    sessions = [session("a", pending=50, resreq=a), session("b", pending=50, resreq=b)]
    decision = Scheduler().plan(snap(sessions, [], [big]))
    assert creates(decision.actions) == {"a": 3, "b": 2}


def test_without_a_fair_share_policy_executors_are_counted_not_weighed() -> None:
    # 12 cpus: A's executors need 1 cpu, B's 4. Counting executors gives both 2, then the spare
    # cpus to A; DRF evens the cpu shares instead (A 6 and B 1.5, rounded: the spare to A).
    nodes = [NodeView("n1", ResourceRequirement(cpu=12, memory=12 * GIB))]
    a = ResourceRequirement(cpu=1, memory=GIB)
    b = ResourceRequirement(cpu=4, memory=GIB)
    sessions = [session("a", pending=50, resreq=a), session("b", pending=50, resreq=b)]
    assert creates(Scheduler(["priority"]).plan(snap(sessions, [], nodes)).actions) == {"a": 4, "b": 2}
    decision = Scheduler(["priority", "drf"]).plan(snap(sessions, [], nodes))
    assert decision.entitlements == pytest.approx({"a": 6.0, "b": 1.5})
    assert creates(decision.actions) == {"a": 8, "b": 1}


def test_weights_scale_the_fair_share() -> None:
    sessions = [session("heavy", pending=50, weight=3.0), session("light", pending=50)]
    assert creates(Scheduler().plan(snap(sessions, [], [node(cpu=8)])).actions) == {"heavy": 6, "light": 2}


def test_a_session_that_needs_no_gpu_is_not_held_back_when_gpus_run_out() -> None:
    gpu = ResourceRequirement(cpu=1, memory=1024, gpu=1)
    nodes = [NodeView("g", ResourceRequirement(cpu=8, memory=8 * 1024, gpu=2))]
    sessions = [session("gpu", pending=50, resreq=gpu), session("cpu", pending=50)]
    decision = Scheduler().plan(snap(sessions, [], nodes))
    assert creates(decision.actions) == {"gpu": 2, "cpu": 6}


def test_every_session_with_work_gets_one_executor_before_any_gets_a_second() -> None:
    # A gpu executor costs 1/4 of the cluster's gpus, a cpu one 1/64 of its cpus: by DRF alone the
    # gpu session would get a fraction of one executor, and be rounded down to nothing.
    gpu = ResourceRequirement(cpu=1, memory=1024, gpu=1)
    nodes = [NodeView("g", ResourceRequirement(cpu=64, memory=64 * 1024, gpu=4), max_executors=8)]
    sessions = [session("gpu", pending=50, resreq=gpu)] + [session(f"c{i}", pending=50) for i in range(4)]
    decision = Scheduler().plan(snap(sessions, [], nodes))
    assert creates(decision.actions)["gpu"] == 1
    assert sum(creates(decision.actions).values()) == 8


def test_min_instances_come_before_fair_shares() -> None:
    sessions = [session("busy", pending=50), session("reserved", min_instances=3)]
    assert creates(Scheduler().plan(snap(sessions, [], [node(cpu=8)])).actions) == {"busy": 5, "reserved": 3}


# ---- proportion ---------------------------------------------------------------------------


def test_proportion_follows_the_backlog() -> None:
    sessions = [session("big", pending=30), session("small", pending=10)]
    decision = Scheduler(["priority", "proportion"]).plan(snap(sessions, [], [node(cpu=8)]))
    assert creates(decision.actions) == {"big": 6, "small": 2}
    # fair share alone splits evenly
    assert creates(Scheduler().plan(snap(sessions, [], [node(cpu=8)])).actions) == {"big": 4, "small": 4}


# ---- the water-filling itself ---------------------------------------------------------------


def _claim(key: str, lo: int, hi: int, rate: float = 1.0, need: tuple[float, ...] = (1, 0, 0, 1)) -> Claim:
    return Claim(key, lo, hi, rate, (need[0], need[1], need[2], need[3]), rank=(0, key))


def test_split_is_max_min_fair_and_uses_the_whole_pool() -> None:
    claims = [_claim("a", 0, 2), _claim("b", 0, 10), _claim("c", 0, 10)]
    pool: Pool = [10.0, 0.0, 0.0, float("inf")]
    shares, whole = split(claims, pool)
    assert shares == pytest.approx({"a": 2.0, "b": 4.0, "c": 4.0})
    assert whole == {"a": 2, "b": 4, "c": 4}
    assert pool[0] == pytest.approx(0.0)


def test_split_rounds_leftovers_to_current_holders_for_stability() -> None:
    claims = [_claim("a", 0, 10), _claim("b", 0, 10), _claim("c", 0, 10)]
    claims[2].held = 3
    shares, whole = split(claims, [8.0, 0.0, 0.0, float("inf")])
    assert shares["a"] == pytest.approx(8 / 3)
    assert whole == {"a": 3, "b": 2, "c": 3}  # the holder keeps its third; then the elder


def test_split_gives_minimums_in_turn_when_they_do_not_all_fit() -> None:
    claims = [_claim("a", 3, 5), _claim("b", 3, 5)]
    claims[1].held = 1
    _, whole = split(claims, [4.0, 0.0, 0.0, float("inf")])
    assert whole == {"b": 3, "a": 1}  # holders first


def test_split_counts_the_executor_limit() -> None:
    claims = [_claim("a", 0, 10), _claim("b", 0, 10)]
    _, whole = split(claims, [100.0, 0.0, 0.0, 5.0])
    assert sorted(whole.values()) == [2, 3]
