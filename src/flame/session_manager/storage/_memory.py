"""Memory engine: no durability, for benchmarks, tests and ``storage: none``.

It keeps the shared writer's semantics without its thread: records are copied when written and
a batch is committed on the event loop when it is cut, so code tested against it sees what it
would see with SQLite: a later mutation of a live object is not stored until it is written again,
and load() after stop()/start() of the same object returns what was committed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._records import (
    Batch,
    StoredState,
    TaskUpdate,
    UpdateTask,
    apply_counts,
    session_order,
    task_order,
    task_seq,
)
from flame.types import Application, Session, SessionState, Task


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


def _update(task: Task, update: UpdateTask | TaskUpdate) -> None:
    task.state = update.state
    task.attempts = update.attempts
    task.output = update.output
    task.completion_time = update.completion_time
    if isinstance(update, UpdateTask):
        if update.event is not None:
            task.events.append(update.event)
    else:
        task.events.extend(update.events)


class MemoryStorage(Storage):
    """Keeps committed records in dicts owned by this object."""

    _threaded = False  # nothing blocks: commit on the event loop

    def __init__(self, url: str = "memory") -> None:
        super().__init__(url)
        self._applications: dict[str, Application] = {}
        self._sessions: dict[str, Session] = {}
        self._tasks: dict[str, dict[str, Task]] = {}

    def _capture_application(self, app: Application) -> Any:
        return _copy_application(app)

    def _capture_session(self, session: Session) -> Any:
        return _copy_session(session)

    def _capture_task(self, task: Task) -> Any:
        return _copy_task(task)

    def _merge_update(self, captured: Any, update: UpdateTask) -> Any:
        _update(captured, update)  # the capture is this engine's own copy
        return captured

    def _prepare(self, batch: Batch) -> Callable[[], None]:
        return partial(self._apply, batch)  # its objects were copied when written

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _open_reader(self) -> None:
        pass

    def _close_reader(self) -> None:
        pass

    def _read_state(self, closed_tasks: bool, finished_tasks: bool) -> StoredState:
        sessions = sorted((_copy_session(s) for s in self._sessions.values()), key=session_order)
        apply_counts(sessions, self._counts())
        loaded = [
            _copy_task(task)
            for session_id, per_session in self._tasks.items()
            if closed_tasks or self._is_open(session_id)
            for task in per_session.values()
            if finished_tasks or not task.state.is_final
        ]
        return StoredState(
            applications=[_copy_application(app) for _, app in sorted(self._applications.items())],
            sessions=sessions,
            tasks=sorted(loaded, key=task_order),
        )

    def _is_open(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and session.state == SessionState.OPEN

    def _counts(self) -> list[tuple[str, int, int, int | None]]:
        """As the SQL engines' GROUP BY: (session id, state, how many, highest numeric id)."""
        counts: dict[tuple[str, int], tuple[int, int | None]] = {}
        for session_id, per_session in self._tasks.items():
            for task in per_session.values():
                key = (session_id, int(task.state))
                count, highest = counts.get(key, (0, None))
                seq = task_seq(task.id)
                if seq is not None and (highest is None or seq > highest):
                    highest = seq
                counts[key] = (count + 1, highest)
        return [(session_id, state, count, highest) for (session_id, state), (count, highest) in counts.items()]

    def _read_task(self, session_id: str, task_id: str) -> Task | None:
        task = self._tasks.get(session_id, {}).get(task_id)
        return None if task is None else _copy_task(task)

    def _read_tasks(
        self, session_id: str, offset: int, limit: int | None, states: tuple[int, ...] | None
    ) -> list[Task]:
        tasks = self._tasks.get(session_id, {}).values()
        chosen = sorted((t for t in tasks if states is None or t.state in states), key=task_order)
        end = None if limit is None else offset + limit
        return [_copy_task(task) for task in chosen[offset:end]]

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
        for update in batch.updates:
            stored = self._tasks.get(update.session_id, {}).get(update.task_id)
            if stored is not None:
                _update(stored, update)
