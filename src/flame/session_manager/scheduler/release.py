"""Giving executors back: delay release, the idle grace, and making room for another shape.

- A bound executor with no task, whose session has nothing pending, waits the session's
  delay_release for more work before it unbinds (min_instances stay bound while the
  session is open). Work that comes back in bursts within the delay finds it still bound.
- An executor of a closed or vanished session unbinds as soon as its tasks are done.
- An idle (unbound) executor no one took this cycle is released after the idle grace.
- An idle executor that cannot serve a session still short of its share is released
  at once if that makes room for the session's executor on its node.
"""

from __future__ import annotations

from flame.session_manager.scheduler.capacity import Room
from flame.session_manager.scheduler.index import ClusterIndex
from flame.session_manager.scheduler.snapshot import (
    Action,
    ExecutorView,
    ReleaseExecutor,
    SessionView,
    Snapshot,
    UnbindExecutor,
)
from flame.types import ResourceRequirement


def unbind_unneeded(
    snapshot: Snapshot, sessions: dict[str, SessionView], index: ClusterIndex, actions: list[Action]
) -> None:
    """Unbind executors their sessions no longer need; they leave ``index.bound`` and ``index.held``."""
    now = snapshot.now
    for sid, bound in index.bound.items():
        session = sessions.get(sid)
        if session is None or not session.open:
            leaving = [e for e in bound if e.busy == 0]
            reason = "its session is closed"
        elif session.pending == 0 and index.held[sid] > session.min_instances:
            spare = index.held[sid] - session.min_instances
            waited = [e for e in bound if e.busy == 0 and now - e.idle_since >= session.delay_release_ms]
            waited.sort(key=lambda e: (e.idle_since, e.id))
            leaving = waited[:spare]
            reason = f"no work for {session.delay_release_ms} ms (delay_release)"
        else:
            continue
        if not leaving:
            continue
        gone = {e.id for e in leaving}
        bound[:] = [e for e in bound if e.id not in gone]
        index.held[sid] -= len(leaving)
        for e in leaving:
            actions.append(UnbindExecutor(e.id, reason))
            index.incoming.append((e.node, e.resreq, False))
        if session is None or not session.open:
            for e in bound:  # busy: they unbind when their tasks are done, and are as good as free
                index.incoming.append((e.node, e.resreq, False))


def release_idle(snapshot: Snapshot, leftover: list[ExecutorView], actions: list[Action]) -> None:
    """Release the idle executors no one took this cycle once they waited the idle grace."""
    grace = snapshot.idle_release_ms
    for e in leftover:
        if snapshot.now - e.idle_since >= grace:
            actions.append(ReleaseExecutor(e.id, f"idle for {grace} ms"))


def make_room(
    short: list[tuple[ResourceRequirement, int]],
    leftover: list[ExecutorView],
    room: Room,
    index: ClusterIndex,
    actions: list[Action],
) -> list[ExecutorView]:
    """Release idle executors that block a short session's shape on their node; return the rest.

    The room they free is used in a later cycle, once their executor manager has let them go,
    so node capacity is never exceeded even for a moment.
    """
    if not short or not leftover:
        return leftover
    kept = list(leftover)
    for want, missing in short:
        while missing > 0:
            victim = next((e for e in kept if room.would_fit_after_release(e.node, e.resreq, want)), None)
            if victim is None:
                break
            kept.remove(victim)
            actions.append(ReleaseExecutor(victim.id, f"making room for an executor of {want}"))
            index.incoming.append((victim.node, victim.resreq, True))  # waited for, not preempted for
            missing -= 1
    return kept
