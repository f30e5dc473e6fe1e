"""Scheduling v1: a pure function from a Snapshot to a Decision.

Per cycle:
1. Release executors no one needs: executors of closed or finished sessions are
   unbound once idle for the session's delay_release; unbound executors are
   released after the idle grace, or at once when another session needs room.
2. Compute each session's target: its demand (backlog, at least min_instances,
   at most max_instances), with executors handed out one at a time in order of
   priority (higher first), then fewest executors held, then age, so equal
   sessions end up with equal shares.
3. Serve targets with idle executors first (warm reuse), then new executors on
   the node with the most free room, never exceeding node resources, node slots
   or the cluster executor limit.
"""

from __future__ import annotations

from collections import defaultdict

from flame.session_manager.scheduler.snapshot import (
    Action,
    BindExecutor,
    CreateExecutor,
    Decision,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    SessionView,
    Snapshot,
    UnbindExecutor,
)
from flame.types import ExecutorState, ResourceRequirement

_HELD = (ExecutorState.VOID, ExecutorState.BINDING, ExecutorState.BOUND)
_GONE = (ExecutorState.RELEASING, ExecutorState.RELEASED)


class _Room:
    """Free resources and slots per node, updated as the plan places executors."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.free: dict[str, ResourceRequirement] = {}
        self.slots: dict[str, int | None] = {}
        counts: dict[str, int] = defaultdict(int)
        used: dict[str, ResourceRequirement] = defaultdict(ResourceRequirement)
        for executor in snapshot.executors:
            if executor.state != ExecutorState.RELEASED:
                counts[executor.node] += 1
                used[executor.node] = used[executor.node] + executor.resreq
        for node in snapshot.nodes:
            if not node.ready:
                continue
            self.free[node.name] = node.allocatable - used[node.name]
            self.slots[node.name] = node.max_executors - counts[node.name] if node.max_executors else None
        total = sum(1 for e in snapshot.executors if e.state != ExecutorState.RELEASED)
        self.cluster_left = None if snapshot.max_executors is None else snapshot.max_executors - total

    def best_node(self, resreq: ResourceRequirement) -> str | None:
        if self.cluster_left is not None and self.cluster_left <= 0:
            return None
        fitting = [
            name
            for name, free in self.free.items()
            if resreq.fits_in(free) and (self.slots[name] is None or (self.slots[name] or 0) > 0)
        ]
        if not fitting:
            return None
        return max(fitting, key=lambda n: (self.free[n].cpu - resreq.cpu, self.free[n].memory, n))

    def take(self, node: str, resreq: ResourceRequirement) -> None:
        self.free[node] = self.free[node] - resreq
        slots = self.slots[node]
        if slots is not None:
            self.slots[node] = slots - 1
        if self.cluster_left is not None:
            self.cluster_left -= 1

    def give_back(self, executor: ExecutorView) -> None:
        if executor.node in self.free:
            self.free[executor.node] = self.free[executor.node] + executor.resreq
            slots = self.slots[executor.node]
            if slots is not None:
                self.slots[executor.node] = slots + 1
        if self.cluster_left is not None:
            self.cluster_left += 1


def _targets(sessions: list[SessionView], held: dict[str, int], capacity: int) -> dict[str, int]:
    """Hand out up to ``capacity`` executors (beyond those held) by priority, then fewest held."""
    target = {s.id: min(held.get(s.id, 0), s.demand) for s in sessions}
    budget = capacity + sum(held.get(s.id, 0) for s in sessions)
    budget -= sum(target.values())
    wanting = [s for s in sessions if target[s.id] < s.demand]
    while budget > 0 and wanting:
        top = max(s.priority for s in wanting)
        tier = [s for s in wanting if s.priority == top]
        chosen = min(tier, key=lambda s: (target[s.id], s.creation_time, s.id))
        target[chosen.id] += 1
        budget -= 1
        if target[chosen.id] >= chosen.demand:
            wanting.remove(chosen)
    return target


def _release_idle(snapshot: Snapshot, sessions: dict[str, SessionView], actions: list[Action]) -> set[str]:
    """Unbind executors whose session no longer needs them; release long-idle unbound ones."""
    released: set[str] = set()
    bound_count: dict[str, int] = defaultdict(int)
    for e in snapshot.executors:
        if e.state in _HELD and e.session_id:
            bound_count[e.session_id] += 1
    for e in snapshot.executors:
        idle_for = snapshot.now - e.idle_since
        if e.state == ExecutorState.BOUND and e.busy == 0 and e.session_id:
            session = sessions.get(e.session_id)
            if session is None or not session.open:
                actions.append(UnbindExecutor(e.id))
                released.add(e.id)
            elif (
                session.pending == 0
                and bound_count[session.id] > session.min_instances
                and idle_for >= session.delay_release_ms
            ):
                actions.append(UnbindExecutor(e.id))
                bound_count[session.id] -= 1
                released.add(e.id)
        elif e.state == ExecutorState.IDLE and idle_for >= snapshot.idle_release_ms:
            actions.append(ReleaseExecutor(e.id))
            released.add(e.id)
    return released


def plan(snapshot: Snapshot) -> Decision:
    decision = Decision()
    actions = decision.actions
    sessions = {s.id: s for s in snapshot.sessions}
    busy = _release_idle(snapshot, sessions, actions)

    held: dict[str, int] = defaultdict(int)
    for e in snapshot.executors:
        if e.state in _HELD and e.session_id and e.id not in busy:
            held[e.session_id] += 1
    live = [s for s in snapshot.sessions if (s.open and s.schedulable) or held.get(s.id, 0)]
    room = _Room(snapshot)
    idle = [e for e in snapshot.executors if e.state == ExecutorState.IDLE and e.id not in busy]
    free_slots = _capacity_estimate(snapshot, room, idle)
    targets = _targets([s for s in live if s.schedulable], held, free_slots)

    any_ready = any(n.ready for n in snapshot.nodes)
    for s in live:
        if (
            any_ready
            and s.schedulable
            and s.demand > held.get(s.id, 0)
            and not _fits_anywhere(snapshot.nodes, s.resreq)
        ):
            decision.unplaceable[s.id] = (
                f"no node can hold an executor of {s.resreq}; largest node: {_largest(snapshot.nodes)}"
            )
    order = sorted(live, key=lambda s: (-s.priority, held.get(s.id, 0), s.creation_time, s.id))
    for session in order:
        if not session.schedulable:
            continue
        need = targets.get(session.id, 0) - held.get(session.id, 0)
        while need > 0:
            match = _take_idle(idle, session)
            if match is not None:
                actions.append(BindExecutor(match.id, session.id))
            else:
                node = room.best_node(session.resreq)
                if node is None and idle:
                    # Make room: release an idle executor that does not fit this session.
                    victim = idle.pop(0)
                    actions.append(ReleaseExecutor(victim.id))
                    room.give_back(victim)
                    continue
                if node is None:
                    break
                room.take(node, session.resreq)
                actions.append(CreateExecutor(node, session.id, session.resreq))
            need -= 1
    return decision


def _capacity_estimate(snapshot: Snapshot, room: _Room, idle: list[ExecutorView]) -> int:
    """How many more executors could be bound: idle ones plus what fits by slot counts."""
    slot = min((s.resreq for s in snapshot.sessions), key=lambda r: (r.cpu, r.memory), default=None)
    extra = 0
    for name, free in room.free.items():
        if slot is None:
            break
        fit = _fit_count(free, slot)
        slots = room.slots[name]
        extra += fit if slots is None else min(fit, slots)
    if room.cluster_left is not None:
        extra = min(extra, max(room.cluster_left, 0))
    return extra + len(idle)


def _fit_count(free: ResourceRequirement, slot: ResourceRequirement) -> int:
    counts = []
    for have, want in ((free.cpu, slot.cpu), (free.memory, slot.memory), (free.gpu, slot.gpu)):
        if want > 0:
            counts.append(max(have, 0) // want)
    return min(counts) if counts else 1_000_000


def _take_idle(idle: list[ExecutorView], session: SessionView) -> ExecutorView | None:
    """Prefer an idle executor last used by the same application (warm reuse)."""
    fitting = [e for e in idle if session.resreq.fits_in(e.resreq)]
    if not fitting:
        return None
    same_app = [e for e in fitting if e.application == session.application]
    chosen = (same_app or fitting)[0]
    idle.remove(chosen)
    return chosen


def _fits_anywhere(nodes: tuple[NodeView, ...], resreq: ResourceRequirement) -> bool:
    return any(resreq.fits_in(n.allocatable) for n in nodes if n.ready)


def _largest(nodes: tuple[NodeView, ...]) -> str:
    ready = [n for n in nodes if n.ready]
    if not ready:
        return "none registered"
    return str(max(ready, key=lambda n: (n.allocatable.cpu, n.allocatable.memory)).allocatable)
