"""What the scheduler sees (a snapshot) and what it decides (actions).

Plain immutable data: building a snapshot copies what the decision needs, so a
decision can be computed, tested or simulated with no I/O and no shared state.
The views are named tuples because a snapshot holds one per executor and is built
every cycle: a named tuple is made about five times faster than a frozen dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from flame.types import ExecutorState, ResourceRequirement


class SessionView(NamedTuple):
    id: str
    application: str
    priority: int
    min_instances: int
    max_instances: int | None  # the smaller of the session's and the application's
    resreq: ResourceRequirement
    pending: int  # tasks waiting for an executor
    running: int  # tasks handed to executors (several may be queued at one executor)
    open: bool = True
    schedulable: bool = True  # False once binding gave up (too many failures)
    delay_release_ms: int = 0
    creation_time: int = 0
    weight: float = 1.0  # relative share within its priority tier (fair share policies)

    def demand(self, busy_executors: int) -> int:
        """Executors this session could use now, given how many of its executors have work.

        Tasks queued behind a running one at the same executor do not ask for another
        executor, so the backlog counts ``pending`` plus the executors that are busy,
        not ``running``. At least min_instances while open, at most max_instances.
        """
        wanted = self.pending + min(busy_executors, self.running)
        if self.open:
            wanted = max(wanted, self.min_instances)
        return wanted if self.max_instances is None else min(wanted, self.max_instances)


class ExecutorView(NamedTuple):
    id: str
    node: str
    state: ExecutorState
    resreq: ResourceRequirement
    session_id: str | None = None
    application: str | None = None
    busy: int = 0  # tasks dispatched to it and not finished
    idle_since: int = 0  # ms; when it last finished a task or changed state


class NodeView(NamedTuple):
    name: str
    allocatable: ResourceRequirement
    max_executors: int = 0  # 0: limited by resources only
    ready: bool = True


@dataclass(frozen=True)
class Snapshot:
    now: int  # ms
    sessions: tuple[SessionView, ...]
    executors: tuple[ExecutorView, ...]
    nodes: tuple[NodeView, ...]
    max_executors: int | None = None  # cluster-wide
    idle_release_ms: int = 5_000  # an unbound executor is released after this long


@dataclass(frozen=True, slots=True)
class CreateExecutor:
    """Create an executor on ``node`` and bind it to ``session_id`` at once."""

    node: str
    session_id: str
    resreq: ResourceRequirement


@dataclass(frozen=True, slots=True)
class BindExecutor:
    executor_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class UnbindExecutor:
    """Unbind after the tasks the executor holds; it gets no new ones from now on."""

    executor_id: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ReleaseExecutor:
    executor_id: str
    reason: str = field(default="", compare=False)


Action = CreateExecutor | BindExecutor | UnbindExecutor | ReleaseExecutor


@dataclass
class Decision:
    actions: list[Action] = field(default_factory=list)
    # Sessions whose executors do not fit on any node, with the reason (reported as events).
    unplaceable: dict[str, str] = field(default_factory=dict)
    # Each scheduled session's fair share in executors (fractional), for metrics and simulators.
    entitlements: dict[str, float] = field(default_factory=dict)
    # Executors each session wants beyond what it holds or was given this cycle, for lack of room
    # on the registered nodes (sessions that want none are left out). Providers make nodes for them.
    unmet: dict[str, int] = field(default_factory=dict)
