"""In-memory records the controller keeps around the domain objects."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from flame.session_manager.links import NodeLink
from flame.types import Executor, Node, Session, Task, now_ms

# A watcher's queue receives tasks as they change; None ends the watch.
TaskQueue = asyncio.Queue["Task | None"]


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
    # Set while a close_session commits: no tasks are taken or dispatched meanwhile.
    closing: asyncio.Future[None] | None = None
    task_watchers: dict[str, list[TaskQueue]] = field(default_factory=dict)
    session_watchers: list[TaskQueue] = field(default_factory=list)

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
    link: NodeLink | None = None
    executors: set[str] = field(default_factory=set)
