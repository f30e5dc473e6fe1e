"""Memory engine: no durability, for benchmarks, tests and ``storage: none``.

It still goes through the shared group-commit writer and stores copies taken when the batch is
cut, so code tested against it sees the same semantics as with SQLite: a later mutation of a live
object is not stored until it is written again, and load() after stop()/start() of the same object
returns what was committed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._records import Batch, StoredState, session_order, task_order
from flame.types import Application, Session, Task


def _copy_application(app: Application) -> Application:
    return copy.deepcopy(app)  # rare and small: simplicity beats speed here


def _copy_session(session: Session) -> Session:
    # Events and ResourceRequirement are frozen and bytes are immutable: shallow copies suffice.
    clone = copy.copy(session)
    clone.spec = copy.copy(session.spec)
    clone.events = list(session.events)
    return clone


def _copy_task(task: Task) -> Task:
    # Field by field: several times faster than copy.copy, and tasks come by the hundred thousand.
    return Task(
        session_id=task.session_id,
        id=task.id,
        input=task.input,
        output=task.output,
        state=task.state,
        creation_time=task.creation_time,
        completion_time=task.completion_time,
        events=list(task.events),
        attempts=task.attempts,
    )


class MemoryStorage(Storage):
    """Keeps committed records in dicts owned by this object."""

    _commit_in_thread = False  # nothing blocks: commit on the event loop

    def __init__(self, url: str = "memory") -> None:
        super().__init__(url)
        self._applications: dict[str, Application] = {}
        self._sessions: dict[str, Session] = {}
        self._tasks: dict[str, dict[str, Task]] = {}

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _load(self) -> StoredState:
        tasks = [_copy_task(task) for per_session in self._tasks.values() for task in per_session.values()]
        return StoredState(
            applications=[_copy_application(app) for _, app in sorted(self._applications.items())],
            sessions=sorted((_copy_session(s) for s in self._sessions.values()), key=session_order),
            tasks=sorted(tasks, key=task_order),
        )

    def _prepare(self, batch: Batch) -> Callable[[], None]:
        copied = Batch(
            deleted_sessions=batch.deleted_sessions,
            deleted_applications=batch.deleted_applications,
            applications=[_copy_application(app) for app in batch.applications],
            sessions=[_copy_session(session) for session in batch.sessions],
            tasks=[_copy_task(task) for task in batch.tasks],
            records=batch.records,
        )
        return partial(self._apply, copied)

    def _apply(self, batch: Batch) -> None:
        for session_id in batch.deleted_sessions:
            self._sessions.pop(session_id, None)
            self._tasks.pop(session_id, None)
        for name in batch.deleted_applications:
            self._applications.pop(name, None)
        for app in batch.applications:
            self._applications[app.name] = app
        for session in batch.sessions:
            self._sessions[session.id] = session
        for task in batch.tasks:
            per_session = self._tasks.get(task.session_id)
            if per_session is None:
                per_session = self._tasks[task.session_id] = {}
            per_session[task.id] = task
