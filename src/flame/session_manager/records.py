"""In-memory records the core keeps around the domain objects."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from flame.types import Executor, Node, Session, Task, now_ms


@dataclass
class SessionRecord:
    session: Session
    tasks: dict[str, Task] = field(default_factory=dict)
    pending: deque[str] = field(default_factory=deque)
    executors: set[str] = field(default_factory=set)  # bound (or binding) to this session
    bind_failures: int = 0
    task_seconds: float | None = None  # moving average of how long its tasks occupy an executor
    gave_up: bool = False
    unplaceable_reported: bool = False
    # When its close began, while that close commits: no tasks are taken or dispatched meanwhile.
    closing_at: int | None = None

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def finished(self) -> bool:
        """Closed, with nothing pending or running."""
        return self.session.state != 0 and not self.pending and self.session.running == 0


@dataclass
class ExecutorRecord:
    executor: Executor
    # Task ids of executor.session_id handed to it, with when (time.monotonic()) each was sent.
    inflight: dict[str, float] = field(default_factory=dict)
    last_done: float = 0.0  # time.monotonic() of its last outcome
    idle_since: int = field(default_factory=now_ms)

    @property
    def id(self) -> str:
        return self.executor.id


@dataclass
class NodeRecord:
    node: Node
    link: object | None = None  # the handle of its stream while connected (the controller's NodeLink)
    executors: set[str] = field(default_factory=set)
