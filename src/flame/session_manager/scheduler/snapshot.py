"""What the scheduler sees (a snapshot) and what it decides (actions).

Plain frozen data: building a snapshot copies what the decision needs, so a
decision can be computed, tested or simulated with no I/O and no shared state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flame.types import ExecutorState, ResourceRequirement


@dataclass(frozen=True)
class SessionView:
    id: str
    application: str
    priority: int
    min_instances: int
    max_instances: int | None  # the smaller of the session's and the application's
    resreq: ResourceRequirement
    pending: int  # tasks waiting for an executor
    running: int  # tasks on executors
    open: bool = True
    schedulable: bool = True  # False once binding gave up (too many failures)
    delay_release_ms: int = 0
    creation_time: int = 0

    @property
    def demand(self) -> int:
        """Executors this session could use right now."""
        wanted = max(self.pending + self.running, self.min_instances if self.open else 0)
        return wanted if self.max_instances is None else min(wanted, self.max_instances)


@dataclass(frozen=True)
class ExecutorView:
    id: str
    node: str
    state: ExecutorState
    resreq: ResourceRequirement
    session_id: str | None = None
    application: str | None = None
    busy: int = 0  # tasks dispatched to it and not finished
    idle_since: int = 0  # ms; when it last finished a task or changed state


@dataclass(frozen=True)
class NodeView:
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


@dataclass(frozen=True)
class CreateExecutor:
    """Create an executor on ``node`` and bind it to ``session_id`` at once."""

    node: str
    session_id: str
    resreq: ResourceRequirement


@dataclass(frozen=True)
class BindExecutor:
    executor_id: str
    session_id: str


@dataclass(frozen=True)
class UnbindExecutor:
    executor_id: str


@dataclass(frozen=True)
class ReleaseExecutor:
    executor_id: str


Action = CreateExecutor | BindExecutor | UnbindExecutor | ReleaseExecutor


@dataclass
class Decision:
    actions: list[Action] = field(default_factory=list)
    # Sessions whose executors do not fit on any node, with the reason (reported as events).
    unplaceable: dict[str, str] = field(default_factory=dict)
