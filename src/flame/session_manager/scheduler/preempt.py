"""Rebalancing: when the cluster is full, sessions above their share give executors to those owed.

No task is killed. A preempted executor that can serve the owed session is unbound: the
controller stops handing it tasks at once, its executor manager finishes what it already
holds, and in a later cycle the idle executor is bound to the session owed it (warm
reuse). One of another shape is released instead, after its tasks too, when that makes
room for the owed session's executor on its node (a cpu-only executor on a gpu node).

Against thrash (bind, unbind, bind again):
- hysteresis: a session short of its fractional share by at least one whole executor may
  take any executor of a victim; one short only by rounding (its whole share is one more
  than it holds) may take only idle executors, which cost no one a task; a victim gives
  only while it stays at or above its share and its whole target (what the allocator would
  give it back);
- executors already on their way (unbinding, being released) are counted first, so a slow
  unbind is not answered with another preemption;
- at most ``limit`` preemptions per cycle;
- victims: lowest tier first, then the session furthest above its share; its idlest
  executors first.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from flame.session_manager.scheduler.allocate import Want
from flame.session_manager.scheduler.capacity import Room
from flame.session_manager.scheduler.index import ClusterIndex
from flame.session_manager.scheduler.snapshot import Action, ExecutorView, ReleaseExecutor, UnbindExecutor
from flame.types import ResourceRequirement


class _Supply:
    """Executors and room on their way, matched against what owed sessions miss."""

    def __init__(self, incoming: list[tuple[str, ResourceRequirement, bool]], room: Room) -> None:
        self.room = room
        self.idle_soon: Counter[ResourceRequirement] = Counter()  # unbinding: will be idle
        self.freeing: dict[str, list[ResourceRequirement]] = defaultdict(list)  # released: room on a node
        for node, shape, released in incoming:
            if released:
                self.freeing[node].append(shape)
            else:
                self.idle_soon[shape] += 1

    def use(self, want: ResourceRequirement, missing: int) -> int:
        """Count what is on its way for ``want`` against ``missing``; return what is still missing."""
        for shape in list(self.idle_soon):
            if missing <= 0:
                return 0
            if want.fits_in(shape):
                used = min(missing, self.idle_soon[shape])
                missing -= used
                self.idle_soon[shape] -= used
                if not self.idle_soon[shape]:
                    del self.idle_soon[shape]
        for node in list(self.freeing) if missing > 0 else ():
            shapes = self.freeing[node]
            while shapes and missing > 0 and self.room.would_fit_after_release(node, shapes[-1], want):
                shapes.pop()
                missing -= 1
            if not shapes:
                del self.freeing[node]
            if missing <= 0:
                break
        return missing


def rebalance(wants: list[Want], index: ClusterIndex, room: Room, limit: int, actions: list[Action]) -> int:
    """Unbind (or release) executors of over-share sessions for the sessions owed; return how many."""
    owed = [w for w in wants if w.target > w.have]
    if not owed or limit <= 0:
        return 0
    owed.sort(key=lambda w: (w.rank, w.level))
    supply = _Supply(index.incoming, room)
    heap = [_victim_key(w, i) for i, w in enumerate(wants) if _surplus(w) >= 1 and index.bound.get(w.session.id)]
    heapq.heapify(heap)
    ordered: set[int] = set()
    useless: set[tuple[int, ResourceRequirement, bool]] = set()  # (victim, shape, idle only): no help
    preempted = 0
    for want in owed:
        shape = want.session.resreq
        idle_only = want.share - want.have < 1
        missing = supply.use(shape, want.target - want.have)
        set_aside = []
        while missing > 0 and preempted < limit and heap:
            entry = heapq.heappop(heap)
            i = entry[2]
            victim = wants[i]
            executors = index.bound[victim.session.id]
            if i not in ordered:
                executors.sort(key=lambda e: (-e.busy, e.idle_since, e.id))  # the idlest last
                ordered.add(i)
            action = None if (i, shape, idle_only) in useless else _take(executors, shape, room, idle_only)
            if action is None:
                useless.add((i, shape, idle_only))
                set_aside.append(entry)
                continue
            actions.append(action)
            victim.have -= 1
            missing -= 1
            preempted += 1
            if _surplus(victim) >= 1 and executors:
                heapq.heappush(heap, _victim_key(victim, i))
        for entry in set_aside:
            heapq.heappush(heap, entry)
        if preempted >= limit:
            break
    return preempted


def _surplus(want: Want) -> float:
    """Executors ``want`` holds beyond its share, and beyond its whole target: the allocator
    serves a session up to that target, so taking one below it is handed straight back (thrash)."""
    return want.have - max(want.share, want.target)


def _victim_key(want: Want, i: int) -> tuple[int, float, int]:
    return (-want.rank, -_surplus(want), i)


def _take(executors: list[ExecutorView], want: ResourceRequirement, room: Room, idle_only: bool) -> Action | None:
    """The idlest executor that can serve ``want`` (unbind), or make room for it (release).

    ``executors`` is ordered busiest first, so the scans start from the idlest.
    """
    why = "rebalancing: its session is above its fair share and another session is owed"
    for i in range(len(executors) - 1, -1, -1):
        e = executors[i]
        if idle_only and e.busy:
            break
        if want.fits_in(e.resreq):
            return UnbindExecutor(executors.pop(i).id, why)
    for i in range(len(executors) - 1, -1, -1):
        e = executors[i]
        if idle_only and e.busy:
            break
        if room.would_fit_after_release(e.node, e.resreq, want):
            return ReleaseExecutor(executors.pop(i).id, why)
    return None
