"""Handing out executors: every session's share at once, then spare room to who still wants more.

Each executor a session is owed comes from, in order: an idle executor last used by the
same application (warm reuse: nothing to create, and the application's files are there
already), a new executor on the node with the most room for its shape, or an idle
executor of another application (which restarts for the new one). Idle executors of
other applications are taken last so they stay warm for their own, until the idle grace.

Priority: shares are served top tier first, so a lower tier only gets what a higher one
cannot use this cycle; and a lower tier's share is what is left after the higher tiers'
whole demand, so while a higher tier has more work than the cluster holds, a lower tier's
share is nothing. Spare room beyond shares goes to no tier below one left short.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from flame.session_manager.scheduler.capacity import Room
from flame.session_manager.scheduler.index import IdlePool
from flame.session_manager.scheduler.snapshot import Action, BindExecutor, CreateExecutor, SessionView


@dataclass(slots=True)
class Want:
    """One schedulable session during a plan."""

    session: SessionView
    rank: int  # 0 for the top tier, then 1, ...
    demand: int  # executors it could use now (within min/max)
    share: float  # its fair share in executors (fractional)
    target: int  # its fair share in whole executors
    have: int  # executors it holds, plus those given this cycle
    rate: float  # executors per unit of fair-share level (policies' weight / cost)

    @property
    def level(self) -> float:
        return self.have / self.rate


class Allocator:
    def __init__(self, pool: IdlePool, room: Room, actions: list[Action]) -> None:
        self.pool = pool
        self.room = room
        self.actions = actions

    def serve(self, want: Want, count: int) -> int:
        """Give ``want`` up to ``count`` more executors; return how many it got."""
        s = want.session
        given = 0
        actions = self.actions
        while given < count and (executor := self.pool.take(s.application, s.resreq)) is not None:
            actions.append(BindExecutor(executor.id, s.id))
            given += 1
        if given < count:
            for node in self.room.place(s.resreq, count - given):
                actions.append(CreateExecutor(node, s.id, s.resreq))
                given += 1
        while given < count and (executor := self.pool.take_any(s.resreq)) is not None:
            actions.append(BindExecutor(executor.id, s.id))
            given += 1
        want.have += given
        return given

    def shares(self, wants: list[Want]) -> list[Want]:
        """Give each session what it is owed, top tier first; return the sessions left short.

        Executors go to the session furthest behind (lowest level) in chunks that bring it
        level with the next one, so when there is not enough for everyone owed, what there
        is gets shared fairly rather than first come, first served. As that hands out few
        executors per step, most of each share (nine tenths) is first tried in one go; if
        that does not fit, the attempt is undone and all is shared step by step.
        """
        owed = [(w, (w.target - w.have) * 9 // 10) for w in wants if w.have < w.target]
        if not owed:
            return []
        saved = (self.room.checkpoint(), self.pool.checkpoint(), len(self.actions), [w.have for w, _ in owed])
        if not all(self.serve(w, n) == n for w, n in owed):
            room, pool, actions, have = saved
            self.room.restore(room)
            self.pool.restore(pool)
            del self.actions[actions:]
            for (w, _), h in zip(owed, have, strict=True):
                w.have = h
        return self._fair_shares(wants)

    def _fair_shares(self, wants: list[Want]) -> list[Want]:
        heap = [(w.rank, w.level, i) for i, w in enumerate(wants) if w.have < w.target]
        heapq.heapify(heap)
        short: list[Want] = []
        while heap:
            rank, _, i = heapq.heappop(heap)
            want = wants[i]
            need = want.target - want.have
            if heap and heap[0][0] == rank:
                need = min(need, max(1, math.ceil((heap[0][1] - want.level) * want.rate)))
            if self.serve(want, need) < need:
                short.append(want)
            elif want.have < want.target:
                heapq.heappush(heap, (rank, want.level, i))
        return short

    def spare(self, wants: list[Want], below: int) -> None:
        """Hand out what room is left, one executor at a time, to the sessions furthest behind.

        Only tiers up to rank ``below`` take part (none under a tier left short).
        """
        heap = [(w.rank, w.level, i) for i, w in enumerate(wants) if w.rank <= below and w.have < w.demand]
        heapq.heapify(heap)
        while heap:
            _, _, i = heapq.heappop(heap)
            want = wants[i]
            if self.serve(want, 1) and want.have < want.demand:
                heapq.heappush(heap, (want.rank, want.level, i))
