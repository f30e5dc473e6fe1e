"""Which pods to make and which to delete, from the plan's unmet demand: pure, no I/O.

- A session wanting executors no registered node can give gets pods for them, counting the
  pods it already has on their way (not yet registered as nodes): never more pods than its
  max_instances needs, nor more than max_pods in all. After a pod of the session failed,
  none is made before its backoff ends, and then one at a time until one registers.
- Pods on their way that the session no longer needs are deleted, those not started first.
- A registered pod whose node serves no session is idle; it is deleted once it was idle for
  its session's delay_release while the session wanted no more executors (or at once, when its
  session is closed or gone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from flame.session_manager.providers.kubernetes._pods import PodStatus
from flame.session_manager.scheduler import SessionView, Snapshot
from flame.types import ExecutorState

X = ExecutorState
_SERVING = (X.VOID, X.BINDING, X.BOUND, X.UNBINDING)


@dataclass
class PodInfo:
    name: str
    session_id: str
    application: str
    created: float  # seconds (monotonic)
    status: PodStatus = field(default_factory=lambda: PodStatus("Pending"))
    deleting: bool = False
    registered: bool = False  # its executor manager registered as a node at some point
    idle_since: float | None = None
    reported: set[str] = field(default_factory=set)  # what was told as session events


@dataclass
class Backoff:
    """Failed pods of one session, in a row."""

    failures: int = 0
    retry_at: float = 0.0
    gave_up: bool = False


@dataclass(frozen=True)
class PodPlan:
    create: dict[str, int]  # session id -> pods
    delete: list[tuple[str, str]]  # pod name, reason


def plan_pods(
    pods: Mapping[str, PodInfo],
    unmet: Mapping[str, int],
    snapshot: Snapshot,
    backoff: Mapping[str, Backoff],
    per_pod: int,
    max_pods: int,
    now: float,
) -> PodPlan:
    """Pods to create per session and pods to delete. Updates each pod's ``registered`` and ``idle_since``."""
    sessions = {s.id: s for s in snapshot.sessions}
    alive = [p for p in pods.values() if not p.deleting and p.status.failed is None]
    delete = _idle(alive, snapshot, sessions, unmet, now)
    coming: dict[str, list[PodInfo]] = {}
    per_session: dict[str, int] = {}
    for pod in alive:
        per_session[pod.session_id] = per_session.get(pod.session_id, 0) + 1
        if not pod.registered:
            coming.setdefault(pod.session_id, []).append(pod)
    for sid, pending in coming.items():
        session = sessions.get(sid)
        wanted = 0 if session is None or not session.open else math.ceil(unmet.get(sid, 0) / per_pod)
        if len(pending) > wanted:
            pending.sort(key=lambda p: (p.status.started, -p.created))  # not started, youngest first
            delete += [(pod.name, "no longer needed") for pod in pending[: len(pending) - wanted]]
    total = len(alive) - len(delete)
    create: dict[str, int] = {}
    for sid, missing in unmet.items():
        session = sessions.get(sid)
        state = backoff.get(sid)
        if session is None or not session.open or missing <= 0:
            continue
        if state is not None and (state.gave_up or now < state.retry_at):
            continue
        on_way = len(coming.get(sid, ()))
        need = math.ceil(missing / per_pod) - on_way
        need = min(need, _session_room(session, per_session.get(sid, 0), per_pod), max_pods - total)
        if state is not None and state.failures:
            need = min(need, 1 - on_way)  # probe with one pod after a failure
        if need > 0:
            create[sid] = need
            total += need
    return PodPlan(create, delete)


def _idle(
    alive: list[PodInfo],
    snapshot: Snapshot,
    sessions: Mapping[str, SessionView],
    unmet: Mapping[str, int],
    now: float,
) -> list[tuple[str, str]]:
    """Registered pods whose node served no session for long enough, while their session wants no more."""
    ready = {n.name for n in snapshot.nodes if n.ready}
    serving = {e.node for e in snapshot.executors if e.state in _SERVING and e.session_id is not None}
    delete: list[tuple[str, str]] = []
    for pod in alive:
        if pod.name in ready:
            pod.registered = True
        if not pod.registered:
            continue
        if pod.name in serving:
            pod.idle_since = None
            continue
        if pod.idle_since is None:
            pod.idle_since = now
        session = sessions.get(pod.session_id)
        if session is None or not session.open:
            delete.append((pod.name, "its session is closed"))
        elif unmet.get(session.id, 0) > 0:
            continue  # the session still wants executors: this node gets one next cycle
        elif now - pod.idle_since >= session.delay_release_ms / 1000:
            delete.append((pod.name, f"idle for {session.delay_release_ms} ms (delay_release)"))
    return delete


def _session_room(session: SessionView, pods: int, per_pod: int) -> int:
    if session.max_instances is None:
        return 1 << 30
    return math.ceil(session.max_instances / per_pod) - pods
