"""Scheduler simulator: the real decision code on a synthetic cluster, no processes and no network.

Nodes, sessions and task durations are made up (seeded, so runs repeat); each cycle the
simulator builds a Snapshot, times ``Scheduler.plan`` on it, and carries out the actions
with executor start, unbind and release delays, running tasks in between. It prints the
decision time per cycle and fairness: Jain's index of each session's executors over its
entitlement, the entitlement computed independently (weighted DRF by progressive filling,
priority tiers served in turn), over sessions with work. Defaults: 1,000 nodes x 10
executor slots (10,000 executors) and 1,000 sessions, 700 at the start and 300 arriving
later. Usage: python benchmarks/scheduler_sim.py [--nodes 1000] [--sessions 1000] [--cycles 80]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import time
from dataclasses import dataclass

from flame.session_manager.scheduler import (
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
from flame.types import ExecutorState, ResourceRequirement

X = ExecutorState
GIB = 1024**3
SHAPES = [  # (share of sessions, executor shape)
    (0.80, ResourceRequirement(cpu=1, memory=2 * GIB)),
    (0.15, ResourceRequirement(cpu=2, memory=4 * GIB)),
    (0.05, ResourceRequirement(cpu=1, memory=4 * GIB, gpu=1)),
]
BIND_MS, UNBIND_MS, RELEASE_MS = 1_000, 100, 200  # service start, leave, executor teardown


@dataclass(slots=True)
class SimSession:
    view: SessionView
    arrives: int  # cycle
    duration_ms: int  # mean task duration
    pending: int
    busy: int = 0
    done: bool = False


@dataclass(slots=True)
class SimExecutor:
    id: str
    node: str
    resreq: ResourceRequirement
    state: ExecutorState
    session: str | None
    application: str | None
    at: int  # ms: when BINDING/UNBINDING/RELEASING ends, or when a BOUND one is free
    idle_since: int = 0


def make_cluster(args: argparse.Namespace, rng: random.Random) -> tuple[tuple[NodeView, ...], list[SimSession]]:
    nodes = tuple(
        NodeView(f"n{i:04d}", ResourceRequirement(cpu=16, memory=64 * GIB, gpu=4 if i % 10 == 0 else 0), args.slots)
        for i in range(args.nodes)
    )
    sessions = []
    for i in range(args.sessions):
        shape = rng.choices([s for _, s in SHAPES], [w for w, _ in SHAPES])[0]
        late = i >= args.sessions * 7 // 10
        view = SessionView(
            id=f"s{i:04d}",
            application=f"app{i % 20}",
            priority=1 if rng.random() < 0.05 else 0,
            min_instances=2 if rng.random() < 0.05 else 0,
            max_instances=20 if rng.random() < 0.1 else None,
            resreq=shape,
            pending=0,
            running=0,
            delay_release_ms=2_000,
            creation_time=i,
            weight=2.0 if rng.random() < 0.1 else 1.0,
        )
        arrives = rng.randrange(10, args.cycles // 2) if late else 0
        backlog = rng.randint(10, 100) if view.priority else rng.randint(100, 3_000)
        sessions.append(SimSession(view, arrives, rng.randint(200, 3_000), backlog))
    return nodes, sessions


class Sim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        self.nodes, self.sessions = make_cluster(args, self.rng)
        self.by_id = {s.view.id: s for s in self.sessions}
        self.executors: dict[str, SimExecutor] = {}
        self.interval = args.interval_ms
        self.scheduler = Scheduler(args.policies.split(","))
        self.serial = 0

    def advance(self, now: int, cycle: int) -> None:
        """Finish executor transitions and run tasks up to ``now``."""
        for e in list(self.executors.values()):
            if e.state == X.BINDING and e.at <= now:
                e.state, e.idle_since = X.BOUND, e.at
            elif e.state == X.UNBINDING and e.at <= now:
                e.state, e.session, e.idle_since = X.IDLE, None, e.at
            elif e.state == X.RELEASING and e.at <= now:
                del self.executors[e.id]
        for s in self.sessions:
            s.busy = 0
        start = now - self.interval
        for e in self.executors.values():
            if e.state not in (X.BOUND, X.UNBINDING) or e.session is None:
                continue
            s = self.by_id[e.session]
            while e.state == X.BOUND and e.at <= now and s.pending > 0:
                e.at = max(e.at, start) + int(s.duration_ms * self.rng.uniform(0.5, 1.5))
                s.pending -= 1
            if e.at > now:
                s.busy += 1
            elif e.state == X.BOUND and e.idle_since < e.at:
                e.idle_since = e.at
        for s in self.sessions:
            if not s.done and s.arrives < cycle and s.pending == 0 and s.busy == 0:
                s.done = True

    def snapshot(self, now: int, cycle: int) -> Snapshot:
        holding = {e.session for e in self.executors.values()}
        sessions = tuple(_view(s) for s in self.sessions if s.arrives <= cycle and (not s.done or s.view.id in holding))
        executors = tuple(
            ExecutorView(e.id, e.node, e.state, e.resreq, e.session, e.application, int(e.at > now), e.idle_since)
            for e in self.executors.values()
        )
        return Snapshot(now=now, sessions=sessions, executors=executors, nodes=self.nodes, idle_release_ms=5_000)

    def apply(self, actions: list[object], now: int) -> dict[str, int]:
        counts = {"create": 0, "bind": 0, "unbind": 0, "release": 0}
        for a in actions:
            if isinstance(a, CreateExecutor):
                self.serial += 1
                app = self.by_id[a.session_id].view.application
                e = SimExecutor(f"e{self.serial}", a.node, a.resreq, X.BINDING, a.session_id, app, now + BIND_MS)
                self.executors[e.id] = e
                counts["create"] += 1
            elif isinstance(a, BindExecutor):
                e = self.executors[a.executor_id]
                assert e.state == X.IDLE, f"bind of a {e.state.name} executor"
                e.state, e.session, e.at = X.BINDING, a.session_id, now + BIND_MS
                e.application = self.by_id[a.session_id].view.application
                counts["bind"] += 1
            elif isinstance(a, UnbindExecutor):
                e = self.executors[a.executor_id]
                e.state, e.at = X.UNBINDING, max(e.at, now) + UNBIND_MS
                counts["unbind"] += 1
            elif isinstance(a, ReleaseExecutor):
                e = self.executors[a.executor_id]
                e.state, e.at = X.RELEASING, now + RELEASE_MS
                counts["release"] += 1
        return counts

    def check_capacity(self) -> None:
        per_node: dict[str, list[int]] = {}
        for e in self.executors.values():
            used = per_node.setdefault(e.node, [0, 0, 0, 0])
            used[0] += e.resreq.cpu
            used[1] += e.resreq.memory
            used[2] += e.resreq.gpu
            used[3] += 1
        for n in self.nodes:
            used = per_node.get(n.name, [0, 0, 0, 0])
            a = n.allocatable
            assert used[0] <= a.cpu and used[1] <= a.memory and used[2] <= a.gpu and used[3] <= n.max_executors

    def held(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.executors.values():
            if e.session is not None and e.state in (X.BINDING, X.BOUND):
                counts[e.session] = counts.get(e.session, 0) + 1
        return counts


def _view(s: SimSession) -> SessionView:
    v = s.view
    return SessionView(
        v.id, v.application, v.priority, v.min_instances, v.max_instances, v.resreq, s.pending, s.busy,
        not s.done, True, v.delay_release_ms, v.creation_time, v.weight,
    )  # fmt: skip


def reference_entitlements(snapshot: Snapshot, busy: dict[str, int]) -> dict[str, int]:
    """Weighted DRF by progressive filling, one executor at a time, tier after tier (independent of plan)."""
    cap = [0, 0, 0, 0]
    for n in snapshot.nodes:
        cap[0] += n.allocatable.cpu
        cap[1] += n.allocatable.memory
        cap[2] += n.allocatable.gpu
        cap[3] += n.max_executors
    totals = cap[:3]
    result: dict[str, int] = {}
    for tier in sorted({s.priority for s in snapshot.sessions if s.open}, reverse=True):
        members = [s for s in snapshot.sessions if s.open and s.priority == tier]
        demand = {s.id: s.demand(busy.get(s.id, 0)) for s in members}
        heap: list[tuple[float, int, str]] = []
        for s in members:
            result[s.id] = 0
            if demand[s.id] > 0:
                heapq.heappush(heap, (0.0, s.creation_time, s.id))
        views = {s.id: s for s in members}
        while heap:
            _, order, sid = heapq.heappop(heap)
            r = views[sid].resreq
            need = (r.cpu, r.memory, r.gpu, 1)
            if any(need[k] > cap[k] for k in range(4)):
                continue
            for k in range(4):
                cap[k] -= need[k]
            result[sid] += 1
            if result[sid] < demand[sid]:
                dominant = max(w / t for w, t in zip(need[:3], totals, strict=True) if t > 0)
                heapq.heappush(heap, (result[sid] * dominant / views[sid].weight, order, sid))
    return result


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95)]


def jain(alloc: dict[str, int], entitled: dict[str, int]) -> float:
    ratios = [alloc.get(sid, 0) / e for sid, e in entitled.items() if e > 0]
    if not ratios:
        return 1.0
    return sum(ratios) ** 2 / (len(ratios) * sum(x * x for x in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--slots", type=int, default=10, help="executor slots per node")
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--cycles", type=int, default=80)
    parser.add_argument("--interval-ms", type=int, default=500)
    parser.add_argument("--policies", default="priority,fairshare")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sim = Sim(args)
    plan_ms: list[float] = []
    plan_cpu_ms: list[float] = []  # the thread's CPU time: what a busy machine's wall clock adds is left out
    snap_ms: list[float] = []
    fairness: list[tuple[int, float, float]] = []
    reached: dict[str, int] = {}  # late session -> cycles until it held its share (within one executor)
    first: dict[str, int] = {}  # late session -> cycles until its first executor
    late = {s.view.id: s.arrives for s in sim.sessions if s.arrives > 0}
    print(f"{args.nodes} nodes x {args.slots} slots, {args.sessions} sessions, policies {args.policies}")
    print("cycle  plan_ms  plan_cpu  snap_ms  executors  create  bind  unbind  release  jain_ref  jain_own")
    for cycle in range(args.cycles):
        now = 1_000_000 + cycle * args.interval_ms
        sim.advance(now, cycle)
        began = time.perf_counter()
        snapshot = sim.snapshot(now, cycle)
        snap_ms.append((time.perf_counter() - began) * 1000)
        began, began_cpu = time.perf_counter(), time.thread_time()
        decision = sim.scheduler.plan(snapshot)
        plan_ms.append((time.perf_counter() - began) * 1000)
        plan_cpu_ms.append((time.thread_time() - began_cpu) * 1000)
        counts = sim.apply(list(decision.actions), now)
        sim.check_capacity()
        held = sim.held()
        busy = {s.view.id: s.busy for s in sim.sessions}
        ref = reference_entitlements(snapshot, busy)
        own = {sid: round(v) for sid, v in decision.entitlements.items()}
        fairness.append((cycle, jain(held, ref), jain(held, own)))
        for sid, arrived in late.items():
            if sid not in first and cycle >= arrived and held.get(sid, 0) > 0:
                first[sid] = cycle - arrived
            if sid not in reached and cycle >= arrived and ref.get(sid, 0) > 0 and held.get(sid, 0) >= ref[sid] - 1:
                reached[sid] = cycle - arrived
        if cycle % 5 == 0 or cycle == args.cycles - 1:
            print(
                f"{cycle:5d}  {plan_ms[-1]:7.1f}  {plan_cpu_ms[-1]:8.1f}  {snap_ms[-1]:7.1f}  {len(sim.executors):9d}"
                f"  {counts['create']:6d}"
                f"  {counts['bind']:4d}  {counts['unbind']:6d}  {counts['release']:7d}"
                f"  {fairness[-1][1]:8.3f}  {fairness[-1][2]:8.3f}"
            )
    steady = [f for f in fairness if f[0] >= 10]
    print(
        f"plan time per cycle: median {statistics.median(plan_ms):.1f} ms, p95 {_p95(plan_ms):.1f} ms,"
        f" max {max(plan_ms):.1f} ms (cycle {plan_ms.index(max(plan_ms))})"
    )
    print(
        f"plan CPU time per cycle: median {statistics.median(plan_cpu_ms):.1f} ms, p95 {_p95(plan_cpu_ms):.1f} ms,"
        f" max {max(plan_cpu_ms):.1f} ms"
    )
    print(f"snapshot build per cycle (simulator side): median {statistics.median(snap_ms):.1f} ms")
    print(
        f"Jain's index from cycle 10 (vs. independent DRF reference): mean {statistics.mean(f[1] for f in steady):.3f},"
        f" min {min(f[1] for f in steady):.3f}; vs. the plan's own shares:"
        f" mean {statistics.mean(f[2] for f in steady):.3f}"
    )
    for what, waited in (("with a first executor", first), ("at their share (within one executor)", reached)):
        if waited:
            waits = sorted(waited.values())
            print(
                f"late sessions {what}: {len(waits)}/{len(late)}, cycles after arrival: "
                f"median {statistics.median(waits)}, p95 {waits[int(len(waits) * 0.95)]}, max {waits[-1]}"
            )


if __name__ == "__main__":
    main()
