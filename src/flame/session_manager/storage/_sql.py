"""What the SQL engines share: records captured as rows, a batch as rows, and the queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flame.session_manager.storage import _codec as codec
from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._records import Batch, UpdateTask
from flame.types import Application, Session, SessionState, Task, TaskState


@dataclass
class Rows:
    """A batch already serialized on the event loop, ready for the writer thread."""

    deleted_sessions: list[str]
    deleted_applications: list[str]
    applications: list[codec.Row]
    sessions: list[codec.Row]
    tasks: list[codec.Row]
    updates: list[codec.Row]  # update_params rows

    @classmethod
    def of(cls, batch: Batch) -> Rows:
        return cls(
            deleted_sessions=batch.deleted_sessions,
            deleted_applications=batch.deleted_applications,
            applications=batch.applications,
            sessions=batch.sessions,
            tasks=batch.tasks,
            updates=[codec.update_params(update) for update in batch.updates],
        )


class SqlStorage(Storage):
    """An engine whose records are captured as the rows of codec's tables."""

    def _capture_application(self, app: Application) -> Any:
        return codec.application_row(app)

    def _capture_session(self, session: Session) -> Any:
        return codec.session_row(session)

    def _capture_task(self, task: Task) -> Any:
        return codec.task_row(task)

    def _merge_update(self, captured: Any, update: UpdateTask) -> Any:
        return codec.updated_task_row(captured, update)


class Queries:
    """The statements both engines run, for a driver's parameter marker (``?`` or ``%s``)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        tasks = ", ".join(codec.TASK_COLUMNS)
        order = "ORDER BY session_id, seq IS NULL, seq, id"  # as _records.task_order: numeric ids by number
        self.select_applications = f"SELECT {', '.join(codec.APPLICATION_COLUMNS)} FROM applications ORDER BY name"
        self.select_sessions = f"SELECT {', '.join(codec.SESSION_COLUMNS)} FROM sessions ORDER BY creation_time, id"
        self._order = order
        self.count_tasks = "SELECT session_id, state, count(*), max(seq) FROM tasks GROUP BY session_id, state"
        self.select_task = f"SELECT {tasks} FROM tasks WHERE session_id = {marker} AND id = {marker}"
        self.update_task = (
            f"UPDATE tasks SET state = {marker}, output = {marker}, attempts = {marker}, "
            f"completion_time = {marker}, appended_events = appended_events || {marker} "
            f"WHERE session_id = {marker} AND id = {marker}"
        )
        self._tasks = tasks

    def select_loaded(self, closed_tasks: bool, finished_tasks: bool) -> str:
        """The tasks a load returns: all, or without those of closed sessions, or of final states."""
        where = []
        if not closed_tasks:
            where.append(f"session_id IN (SELECT id FROM sessions WHERE state = {int(SessionState.OPEN)})")
        if not finished_tasks:
            where.append(f"state IN ({int(TaskState.PENDING)}, {int(TaskState.RUNNING)})")
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {self._tasks} FROM tasks{condition} {self._order}"

    def select_page(self, states: int) -> str:
        """A page of one session's tasks, in ``states`` states if not 0.

        Parameters: the session id, the states, the limit (the engine's "no limit" for none), the offset.
        """
        where = f"session_id = {self.marker}"
        if states:
            where += f" AND state IN ({', '.join([self.marker] * states)})"
        order = "ORDER BY seq IS NULL, seq, id"
        return f"SELECT {self._tasks} FROM tasks WHERE {where} {order} LIMIT {self.marker} OFFSET {self.marker}"


def upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...], marker: str, source: str | None = None) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of every non-key column (SQLite and PostgreSQL alike)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    names = ", ".join(columns)
    rows = f"VALUES ({', '.join([marker] * len(columns))})" if source is None else f"SELECT {names} FROM {source}"
    return f"INSERT INTO {table} ({names}) {rows} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
