"""One pass over a snapshot's executors: who holds what, what is idle, what is on its way out."""

from __future__ import annotations

from collections import defaultdict

from flame.session_manager.scheduler.snapshot import ExecutorView, Snapshot
from flame.types import ExecutorState, ResourceRequirement

X = ExecutorState


class ClusterIndex:
    """Executors grouped the ways a plan looks them up; built once per cycle in O(executors)."""

    def __init__(self, snapshot: Snapshot) -> None:
        ready = {n.name for n in snapshot.nodes if n.ready}
        self.held: dict[str, int] = {}  # VOID, BINDING or BOUND, per session
        self.busy: dict[str, int] = {}  # of those, executors with tasks
        self.bound: dict[str, list[ExecutorView]] = {}  # BOUND, per session
        self.idle: list[ExecutorView] = []  # IDLE on ready nodes: can be bound now
        # Executors on their way out: (node, shape, being released). Unbinding ones will be idle
        # soon, released ones free their room; no one needs to be preempted for them.
        self.incoming: list[tuple[str, ResourceRequirement, bool]] = []
        self.used: dict[str, list[int]] = {}  # per node: cpu, memory, gpu, executor count
        self.total = 0  # executors that exist (not Released)
        held, busy, bound, used_by_node = self.held, self.busy, self.bound, self.used
        # Enum members compared by identity: hashing an IntEnum runs Python code, 10,000 times a cycle.
        bound_state, binding, void, idle, released = X.BOUND, X.BINDING, X.VOID, X.IDLE, X.RELEASED
        for e in snapshot.executors:
            state = e.state
            if state is released:
                continue
            used = used_by_node.get(e.node)
            if used is None:
                used = used_by_node[e.node] = [0, 0, 0, 0]
            r = e.resreq
            used[0] += r.cpu
            used[1] += r.memory
            used[2] += r.gpu
            used[3] += 1
            sid = e.session_id
            if sid is not None and (state is bound_state or state is binding or state is void):
                held[sid] = held.get(sid, 0) + 1
                if e.busy:
                    busy[sid] = busy.get(sid, 0) + 1
                if state is bound_state:
                    executors = bound.get(sid)
                    if executors is None:
                        bound[sid] = [e]
                    else:
                        executors.append(e)
            elif state is idle:
                if e.node in ready:
                    self.idle.append(e)
            elif state is X.UNBINDING or state is X.RELEASING:
                self.incoming.append((e.node, r, state is X.RELEASING))
        self.total = sum(u[3] for u in used_by_node.values())


class IdlePool:
    """Idle executors a plan may bind, grouped by the application they last served (warm reuse)."""

    def __init__(self, idle: list[ExecutorView]) -> None:
        self._by_app: dict[str | None, list[ExecutorView]] = defaultdict(list)
        for e in idle:
            self._by_app[e.application].append(e)
        self._left = len(idle)

    def take(self, application: str, want: ResourceRequirement) -> ExecutorView | None:
        """An idle executor last used by ``application`` that fits ``want``."""
        found = _take_fitting(self._by_app.get(application), want) if self._left else None
        self._left -= found is not None
        return found

    def take_any(self, want: ResourceRequirement) -> ExecutorView | None:
        """An idle executor of any application that fits ``want`` (it restarts for the new one)."""
        for executors in self._by_app.values() if self._left else ():
            found = _take_fitting(executors, want)
            if found is not None:
                self._left -= 1
                return found
        return None

    def checkpoint(self) -> tuple[dict[str | None, list[ExecutorView]], int]:
        """What ``restore`` needs to undo the takes made after this call."""
        return {app: list(executors) for app, executors in self._by_app.items()}, self._left

    def restore(self, saved: tuple[dict[str | None, list[ExecutorView]], int]) -> None:
        by_app, self._left = saved
        self._by_app = defaultdict(list, by_app)

    def remaining(self) -> list[ExecutorView]:
        return [e for executors in self._by_app.values() for e in executors]


def _take_fitting(executors: list[ExecutorView] | None, want: ResourceRequirement) -> ExecutorView | None:
    if not executors:
        return None
    for i in range(len(executors) - 1, -1, -1):
        if want.fits_in(executors[i].resreq):
            return executors.pop(i)
    return None
