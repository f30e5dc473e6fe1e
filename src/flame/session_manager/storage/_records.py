"""What the session manager asks storage to persist, and how a batch of requests is reduced.

Records name whole objects rather than field changes: the session manager keeps the live objects in
memory and hands storage the object it just changed. That keeps the storage interface five types
wide and makes every write an idempotent upsert, which is what lets a batch drop superseded records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flame.types import Application, Session, Task


@dataclass(frozen=True)
class PutApplication:
    """Create or replace an application."""

    app: Application


@dataclass(frozen=True)
class DeleteApplication:
    """Remove an application; removing one that is absent is not an error."""

    name: str


@dataclass(frozen=True)
class PutSession:
    """Create or replace a session: spec, state, times, counters, events and next_task_id."""

    session: Session


@dataclass(frozen=True)
class DeleteSession:
    """Remove a session and every task of it."""

    session_id: str


@dataclass(frozen=True)
class PutTask:
    """Create or replace the task keyed by (session_id, id)."""

    task: Task


Record = PutApplication | DeleteApplication | PutSession | DeleteSession | PutTask
RECORD_TYPES = (PutApplication, DeleteApplication, PutSession, DeleteSession, PutTask)


@dataclass
class StoredState:
    """Everything storage holds, as read once when the session manager starts."""

    applications: list[Application]
    sessions: list[Session]
    tasks: list[Task]  # every task of every session, ordered by session id then numeric task id


# Task ids are decimal counters in Flame; longer strings than this would overflow SQLite's INTEGER.
_MAX_SEQ_DIGITS = 18


def task_seq(task_id: str) -> int | None:
    """The numeric order of a task id, or None for an id that is not a plain decimal number.

    Ids are strings on the wire, so "10" sorts before "9" as text; storage orders by this instead.
    """
    if task_id.isascii() and task_id.isdigit() and len(task_id) <= _MAX_SEQ_DIGITS:
        return int(task_id)
    return None


def task_order(task: Task) -> tuple[str, bool, int, str]:
    """Sort key shared by every engine: session id, numeric ids first in number order, then the rest."""
    seq = task_seq(task.id)
    return (task.session_id, seq is None, 0 if seq is None else seq, task.id)


def session_order(session: Session) -> tuple[int, str]:
    return (session.creation_time, session.id)


@dataclass
class Batch:
    """A reduced batch: at most one entry per key, safe to apply table by table.

    Engines apply it in this order: deleted sessions (with their tasks), deleted applications,
    then the puts. That is equivalent to applying the original records one by one because a
    DeleteSession already dropped every earlier put of its session from the batch, so whatever put
    of that session is left came after the delete.
    """

    deleted_sessions: list[str]
    deleted_applications: list[str]
    applications: list[Application]
    sessions: list[Session]
    tasks: list[Task]
    records: int  # how many records were reduced into this batch (for logs)


def plan_batch(records: Iterable[Record]) -> Batch:
    """Reduce records to a Batch: the last record for a key wins, a DeleteSession drops earlier puts."""
    apps: dict[str, Application | None] = {}  # None marks a delete
    sessions: dict[str, Session] = {}
    tasks: dict[str, dict[str, Task]] = {}
    deleted: dict[str, None] = {}  # an ordered set
    count = 0
    for record in records:
        count += 1
        if isinstance(record, PutTask):  # by far the most frequent record, so tested first
            task = record.task
            per_session = tasks.get(task.session_id)
            if per_session is None:
                per_session = tasks[task.session_id] = {}
            per_session[task.id] = task
        elif isinstance(record, PutSession):
            sessions[record.session.id] = record.session
        elif isinstance(record, DeleteSession):
            sessions.pop(record.session_id, None)
            tasks.pop(record.session_id, None)
            deleted[record.session_id] = None
        elif isinstance(record, PutApplication):
            apps[record.app.name] = record.app
        elif isinstance(record, DeleteApplication):
            apps[record.name] = None
        else:
            raise TypeError(f"not a storage record: {record!r}")
    return Batch(
        deleted_sessions=list(deleted),
        deleted_applications=[name for name, app in apps.items() if app is None],
        applications=[app for app in apps.values() if app is not None],
        sessions=list(sessions.values()),
        tasks=[task for per_session in tasks.values() for task in per_session.values()],
        records=count,
    )
