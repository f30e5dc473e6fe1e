"""Properties of the scheduler on generated clusters (hypothesis): limits hold, nothing is bound twice,
every session with work and room is served, and a cluster with steady demand settles without churn."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame.session_manager.scheduler import (
    Action,
    BindExecutor,
    CreateExecutor,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    Scheduler,
    SessionView,
    Snapshot,
    UnbindExecutor,
)
from flame.types import ResourceRequirement
from tests.unit.test_scheduler_plan import NOW, Model, X

SHAPES = [
    ResourceRequirement(cpu=1, memory=1024),
    ResourceRequirement(cpu=2, memory=1024),
    ResourceRequirement(cpu=1, memory=4096),
    ResourceRequirement(cpu=1, memory=1024, gpu=1),
]
HELD = (X.BINDING, X.BOUND)
POLICY_SETS = [("priority", "fairshare"), ("priority", "proportion"), ("fairshare",), ("priority",)]


@st.composite
def nodes(draw: st.DrawFn, min_size: int = 1) -> list[NodeView]:
    count = draw(st.integers(min_size, 5))
    result = []
    for i in range(count):
        cpu = draw(st.integers(1, 12))
        allocatable = ResourceRequirement(cpu=cpu, memory=draw(st.integers(1, 12)) * 1024, gpu=draw(st.integers(0, 2)))
        result.append(NodeView(f"n{i}", allocatable, draw(st.integers(0, 8)), draw(st.booleans() | st.just(True))))
    return result


@st.composite
def sessions(draw: st.DrawFn, same_priority: bool = False) -> list[SessionView]:
    result = []
    for i in range(draw(st.integers(0, 6))):
        low = draw(st.integers(0, 3))
        high = draw(st.none() | st.integers(max(low, 1), 8))
        result.append(
            SessionView(
                id=f"s{i}",
                application=draw(st.sampled_from(["a", "b"])),
                priority=0 if same_priority else draw(st.integers(0, 2)),
                min_instances=low,
                max_instances=high,
                resreq=draw(st.sampled_from(SHAPES)),
                pending=draw(st.integers(0, 40)),
                running=0,
                open=draw(st.booleans() | st.just(True)),
                schedulable=draw(st.booleans() | st.just(True)),
                delay_release_ms=draw(st.sampled_from([0, 1_000, 60_000])),
                creation_time=i,
                weight=draw(st.sampled_from([1.0, 2.0])),
            )
        )
    return result


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """A cluster in any state the fleet can be in, its limits respected."""
    cluster = draw(nodes())
    views = draw(sessions())
    executors: list[ExecutorView] = []
    used = {n.name: [0, 0, 0, 0] for n in cluster}
    held: Counter[str] = Counter()
    for i in range(draw(st.integers(0, 25))):
        n = draw(st.sampled_from(cluster))
        shape = draw(st.sampled_from(SHAPES))
        u = used[n.name]
        after = [u[0] + shape.cpu, u[1] + shape.memory, u[2] + shape.gpu, u[3] + 1]
        a = n.allocatable
        if (
            after[0] > a.cpu
            or after[1] > a.memory
            or after[2] > a.gpu
            or (n.max_executors and after[3] > n.max_executors)
        ):
            continue
        state = draw(st.sampled_from([X.IDLE, X.BINDING, X.BOUND, X.UNBINDING, X.RELEASING]))
        session = draw(st.sampled_from(views)) if views and state in HELD else None
        if session is not None:
            if session.max_instances is not None and held[session.id] >= session.max_instances:
                continue
            held[session.id] += 1
        busy = draw(st.integers(0, 2)) if state == X.BOUND else 0
        app = session.application if session else draw(st.sampled_from(["a", "b", None]))
        since = NOW - draw(st.integers(0, 10_000))
        executors.append(ExecutorView(f"e{i}", n.name, state, shape, session and session.id, app, busy, since))
        used[n.name] = after
    running = Counter(e.session_id for e in executors if e.busy)
    views = [s._replace(running=running[s.id]) for s in views]
    limit = draw(st.none() | st.integers(len(executors), len(executors) + 6))
    return Snapshot(NOW, tuple(views), tuple(executors), tuple(cluster), limit, draw(st.sampled_from([0, 5_000])))


def check_actions(snapshot: Snapshot, actions: list[Action]) -> None:
    executors = {e.id: e for e in snapshot.executors}
    sessions = {s.id: s for s in snapshot.sessions}
    ready = {n.name for n in snapshot.nodes if n.ready}
    touched = [a.executor_id for a in actions if not isinstance(a, CreateExecutor)]
    assert len(touched) == len(set(touched)), "an executor was given two orders in one cycle"
    for a in actions:
        if isinstance(a, BindExecutor):
            e = executors[a.executor_id]
            assert e.state == X.IDLE and e.node in ready, f"bound a {e.state.name} executor"
            assert sessions[a.session_id].open and sessions[a.session_id].schedulable
            assert a.session_id and sessions[a.session_id].resreq.fits_in(e.resreq)
        elif isinstance(a, CreateExecutor):
            assert a.node in ready and sessions[a.session_id].open and sessions[a.session_id].schedulable
        elif isinstance(a, UnbindExecutor):
            assert executors[a.executor_id].state == X.BOUND
        elif isinstance(a, ReleaseExecutor):
            assert executors[a.executor_id].state in (X.IDLE, X.BOUND, X.VOID)


def check_limits(snapshot: Snapshot, actions: list[Action]) -> None:
    """Node resources and slots, the cluster limit and max_instances, once the actions are done."""
    usage = {n.name: [0, 0, 0, 0] for n in snapshot.nodes}
    total = 0
    held: Counter[str] = Counter()
    for e in snapshot.executors:
        usage[e.node] = [
            x + y for x, y in zip(usage[e.node], (e.resreq.cpu, e.resreq.memory, e.resreq.gpu, 1), strict=True)
        ]
        total += 1
        if e.state in HELD and e.session_id:
            held[e.session_id] += 1
    executors = {e.id: e for e in snapshot.executors}
    for a in actions:
        if isinstance(a, CreateExecutor):
            r = a.resreq
            usage[a.node] = [x + y for x, y in zip(usage[a.node], (r.cpu, r.memory, r.gpu, 1), strict=True)]
            total += 1
            held[a.session_id] += 1
        elif isinstance(a, BindExecutor):
            held[a.session_id] += 1
        elif isinstance(a, UnbindExecutor | ReleaseExecutor):
            sid = executors[a.executor_id].session_id
            if sid and executors[a.executor_id].state in HELD:
                held[sid] -= 1
    for n in snapshot.nodes:
        cpu, memory, gpu, count = usage[n.name]
        a = n.allocatable
        assert cpu <= a.cpu and memory <= a.memory and gpu <= a.gpu, f"node {n.name} over capacity"
        assert not n.max_executors or count <= n.max_executors, f"node {n.name} over its slots"
    assert snapshot.max_executors is None or total <= snapshot.max_executors
    for s in snapshot.sessions:
        if s.max_instances is not None:
            assert held[s.id] <= s.max_instances, f"session {s.id} over max_instances"


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.sampled_from(POLICY_SETS))
def test_one_cycle_respects_every_limit_and_binds_nothing_twice(snapshot: Snapshot, policies: tuple[str]) -> None:
    decision = Scheduler(policies).plan(snapshot)
    check_actions(snapshot, decision.actions)
    check_limits(snapshot, decision.actions)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(), sessions(), st.sampled_from(POLICY_SETS))
def test_many_cycles_respect_every_limit(
    cluster: list[NodeView], views: list[SessionView], policies: tuple[str]
) -> None:
    m = Model(cluster, {s.id: s for s in views})
    scheduler = Scheduler(policies)
    for _ in range(12):
        snapshot = m.snapshot()
        decision = scheduler.plan(snapshot)
        check_actions(snapshot, decision.actions)
        check_limits(snapshot, decision.actions)
        m.apply(decision.actions)
        m.advance()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 6), sessions(same_priority=True), st.sampled_from(POLICY_SETS))
def test_every_session_with_work_and_room_is_served(
    count: int, slots: int, views: list[SessionView], policies: tuple[str]
) -> None:
    # Every node can hold any shape `slots` times, and there are slots for every session's
    # min_instances and for one executor of each session with work.
    big = ResourceRequirement(cpu=2 * slots, memory=4096 * slots, gpu=slots)
    cluster = [NodeView(f"n{i}", big, slots) for i in range(count)]
    views = [s._replace(open=True, schedulable=True) for s in views]
    while sum(max(s.min_instances, 1) for s in views) > count * slots:
        views.pop()
    m = Model(cluster, {s.id: s for s in views})
    for _ in range(8):
        m.cycle(Scheduler(policies))
    for s in views:
        if s.pending > 0 and s.max_instances != 0:
            assert m.held(s.id, (X.BOUND,)) >= 1, f"session {s.id} with work got no executor"


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(), sessions(), st.sampled_from(POLICY_SETS))
def test_steady_demand_settles_without_churn(
    cluster: list[NodeView], views: list[SessionView], policies: tuple[str]
) -> None:
    m = Model(cluster, {s.id: s for s in views})
    scheduler = Scheduler(policies)
    for _ in range(16):
        m.cycle(scheduler)
    settled = {s.id: m.held(s.id) for s in views}
    for _ in range(4):
        decision = m.cycle(scheduler)
        assert not [a for a in decision.actions if isinstance(a, UnbindExecutor | BindExecutor | CreateExecutor)]
    assert {s.id: m.held(s.id) for s in views} == settled
