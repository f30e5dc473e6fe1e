"""Room on the nodes: free resources and executor slots, kept current while a plan places executors.

A plan never hands back room within the cycle that frees it (an executor being released
still occupies its node until its executor manager reports it gone), so free room only
shrinks during a plan. That lets placement keep, per executor shape, a max-heap of nodes
keyed by how many more executors of that shape they hold, correcting stale keys lazily.
"""

from __future__ import annotations

import heapq
import math

from flame.session_manager.scheduler.snapshot import NodeView
from flame.types import ResourceRequirement

# Free resources of one node: cpu, memory, gpu.
Free = list[int]
# A pool of resources for fair shares: cpu, memory, gpu and executor count (may be infinite).
Pool = list[float]

_UNLIMITED = 1 << 62


def fit_count(free: Free, want: ResourceRequirement) -> int:
    """How many executors of shape ``want`` fit in ``free`` (resources only)."""
    count = _UNLIMITED
    if want.cpu > 0:
        count = min(count, free[0] // want.cpu)
    if want.memory > 0:
        count = min(count, free[1] // want.memory)
    if want.gpu > 0:
        count = min(count, free[2] // want.gpu)
    return max(count, 0)


class Room:
    """Free room on ready nodes, and executors still allowed by the cluster-wide limit."""

    def __init__(
        self,
        nodes: tuple[NodeView, ...],
        used: dict[str, list[int]],
        max_executors: int | None,
        total_executors: int,
    ) -> None:
        self.free: dict[str, Free] = {}
        self.slots: dict[str, int | None] = {}
        self.allocatable: dict[str, ResourceRequirement] = {}
        self._node_slots: dict[str, int | None] = {}
        for node in nodes:
            if not node.ready:
                continue
            cpu, memory, gpu, count = used.get(node.name, (0, 0, 0, 0))
            a = node.allocatable
            self.free[node.name] = [a.cpu - cpu, a.memory - memory, a.gpu - gpu]
            self.slots[node.name] = node.max_executors - count if node.max_executors else None
            self.allocatable[node.name] = a
            self._node_slots[node.name] = node.max_executors or None
        self.cluster_left = None if max_executors is None else max_executors - total_executors
        self._max_executors = max_executors
        self._heaps: dict[ResourceRequirement, list[tuple[int, int, str]]] = {}
        self._shapes: dict[ResourceRequirement, bool] = {}

    # ---- fair-share pool ---------------------------------------------------------------------

    def pool(self) -> Pool:
        """Everything ready nodes offer (used or not): what fair shares divide."""
        cpu = memory = gpu = 0
        count: float = 0
        for name, a in self.allocatable.items():
            cpu += a.cpu
            memory += a.memory
            gpu += a.gpu
            slots = self._node_slots[name]
            count = math.inf if slots is None else count + slots
        if self._max_executors is not None:
            count = min(count, self._max_executors)
        return [float(cpu), float(memory), float(gpu), float(count)]

    # ---- placement ---------------------------------------------------------------------------

    def count(self, name: str, want: ResourceRequirement) -> int:
        """Executors of shape ``want`` that still fit on node ``name``."""
        count = fit_count(self.free[name], want)
        slots = self.slots[name]
        return count if slots is None else min(count, max(slots, 0))

    def place(self, want: ResourceRequirement, count: int = 1) -> list[str]:
        """Take room for up to ``count`` executors of shape ``want``; return their nodes.

        Each goes to the node with the most room for the shape (spreading). An executor
        that needs no gpu goes to a node without gpus while one has room, so gpus stay
        reachable for the sessions that need them.
        """
        placed: list[str] = []
        if self.cluster_left is not None:
            count = min(count, self.cluster_left)
        heap = self._heaps.get(want)
        if heap is None:
            heap = [(self._penalty(name, want), -n, name) for name in self.free if (n := self.count(name, want)) > 0]
            heapq.heapify(heap)
            self._heaps[want] = heap
        cpu, memory, gpu = want.cpu, want.memory, want.gpu
        free_of, slots_of = self.free, self.slots
        while heap and len(placed) < count:
            penalty, stale, name = heap[0]
            free = free_of[name]
            fit = _UNLIMITED
            if cpu > 0:
                fit = free[0] // cpu
            if memory > 0:
                fit = min(fit, free[1] // memory)
            if gpu > 0:
                fit = min(fit, free[2] // gpu)
            slots = slots_of[name]
            if slots is not None:
                fit = min(fit, slots)
            if fit <= 0:
                heapq.heappop(heap)
            elif fit != -stale:
                heapq.heapreplace(heap, (penalty, -fit, name))
            else:
                free[0] -= cpu
                free[1] -= memory
                free[2] -= gpu
                if slots is not None:
                    slots_of[name] = slots - 1
                placed.append(name)
                if fit > 1:
                    heapq.heapreplace(heap, (penalty, 1 - fit, name))
                else:
                    heapq.heappop(heap)
        if self.cluster_left is not None:
            self.cluster_left -= len(placed)
        return placed

    def checkpoint(self) -> tuple[dict[str, Free], dict[str, int | None], int | None]:
        """What ``restore`` needs to undo the placements made after this call."""
        return {n: list(f) for n, f in self.free.items()}, dict(self.slots), self.cluster_left

    def restore(self, saved: tuple[dict[str, Free], dict[str, int | None], int | None]) -> None:
        self.free, self.slots, self.cluster_left = saved
        self._heaps.clear()

    def _penalty(self, name: str, want: ResourceRequirement) -> int:
        return int(want.gpu == 0 and self.allocatable[name].gpu > 0)

    def would_fit_after_release(self, name: str, released: ResourceRequirement, want: ResourceRequirement) -> bool:
        """Would ``want`` fit on node ``name`` once an executor of shape ``released`` is gone?"""
        free = self.free.get(name)
        if free is None:
            return False
        after = [free[0] + released.cpu, free[1] + released.memory, free[2] + released.gpu]
        slots = self.slots[name]
        return fit_count(after, want) > 0 and (slots is None or slots + 1 > 0)

    # ---- what can never fit --------------------------------------------------------------------

    def fits_anywhere(self, want: ResourceRequirement) -> bool:
        """Could one executor of shape ``want`` fit on some ready node, were it empty?"""
        known = self._shapes.get(want)
        if known is None:
            known = any(want.fits_in(a) for a in set(self.allocatable.values()))
            self._shapes[want] = known
        return known

    def largest(self) -> str:
        if not self.allocatable:
            return "none ready"
        return str(max(self.allocatable.values(), key=lambda a: (a.cpu, a.memory, a.gpu)))
