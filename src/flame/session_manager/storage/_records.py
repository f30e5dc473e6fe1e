"""What the session manager asks storage to persist, and how a batch of requests is reduced.

Most records name whole objects rather than field changes: the session manager keeps the live
objects in memory and hands storage the object it just changed, so every put is an idempotent
upsert and a batch can drop superseded records. The one exception is the hot path: a task that
changed state after its creation is written as an ``UpdateTask``, the few fields a transition
changes plus the one event it added, so that finishing a task never re-sends its input or
re-encodes its earlier events.

A record is captured when it is written: the engine copies or encodes the object at once, so a
later change to the live object reaches storage only through a later record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flame.types import Application, Event, Session, Task, TaskState


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
    """Create or replace a session: spec, state, times, events and next_task_id.

    Its task counters are stored too, but a load counts them from the stored tasks instead.
    """

    session: Session


@dataclass(frozen=True)
class DeleteSession:
    """Remove a session and every task of it."""

    session_id: str


@dataclass(frozen=True)
class PutTask:
    """Create or replace the task keyed by (session_id, id), events and all."""

    task: Task


class UpdateTask(NamedTuple):
    """A stored task changed state: its new state, attempts, output and completion time, and the
    one event the change added (None for none), appended to the events already stored.

    An update of a task that is not stored (its session was deleted) changes nothing. A named
    tuple rather than a frozen dataclass: it is immutable all the same, and one is made per state
    change on the hot path, where a tuple is several times cheaper to build.
    """

    session_id: str
    task_id: str
    state: TaskState
    attempts: int
    output: bytes | None
    completion_time: int | None
    event: Event | None = None

    @classmethod
    def of(cls, task: Task, event: Event | None = None) -> UpdateTask:
        """The update that brings the stored copy of ``task`` to its current fields plus ``event``.

        ``event`` is the one event appended to ``task.events`` since its last record.
        """
        return cls(task.session_id, task.id, task.state, task.attempts, task.output, task.completion_time, event)


Record = PutApplication | DeleteApplication | PutSession | DeleteSession | PutTask | UpdateTask
RECORD_TYPES = (PutApplication, DeleteApplication, PutSession, DeleteSession, PutTask, UpdateTask)


@dataclass
class StoredState:
    """What storage holds, as read once when the session manager starts.

    Every session's counters (pending, running, succeed, failed, cancelled) are counted from its
    stored tasks, whether or not those tasks are in ``tasks``, and its next_task_id is past the
    highest numeric id stored.
    """

    applications: list[Application]
    sessions: list[Session]
    tasks: list[Task]  # ordered by session id then numeric task id


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


@dataclass(slots=True)
class TaskUpdate:
    """The UpdateTasks of one task in one batch, folded together: the last one's fields, all events."""

    session_id: str
    task_id: str
    state: TaskState
    attempts: int
    output: bytes | None
    completion_time: int | None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def first(cls, update: UpdateTask) -> TaskUpdate:
        events = [] if update.event is None else [update.event]
        return cls(
            update.session_id,
            update.task_id,
            update.state,
            update.attempts,
            update.output,
            update.completion_time,
            events,
        )

    def fold(self, update: UpdateTask) -> None:
        self.state = update.state
        self.attempts = update.attempts
        self.output = update.output
        self.completion_time = update.completion_time
        if update.event is not None:
            self.events.append(update.event)


#: A record paired with what the engine captured of it when it was written (None for deletes and
#: updates, which hold nothing mutable).
Entry = tuple[Record, Any]

#: Applies an update to a task captured earlier in the same batch and returns the new capture.
MergeUpdate = Callable[[Any, UpdateTask], Any]


@dataclass
class Batch:
    """A reduced batch: at most one entry per key, safe to apply table by table.

    Engines apply it in this order: deleted sessions (with their tasks), deleted applications, the
    puts, then the updates. That is equivalent to applying the original records one by one because
    a DeleteSession already dropped every earlier put and update of its session from the batch, a
    put already absorbed the updates of its task that came after it and dropped those before it,
    and an update left over names a task not put in this batch.

    Puts hold the engine's captures (rows for SQL, copies for memory).
    """

    deleted_sessions: list[str]
    deleted_applications: list[str]
    applications: list[Any]
    sessions: list[Any]
    tasks: list[Any]
    updates: list[UpdateTask | TaskUpdate]  # a TaskUpdate where several were folded
    records: int  # how many records were reduced into this batch (for logs)


def plan_batch(entries: Iterable[Entry], merge: MergeUpdate) -> Batch:
    """Reduce captured records to a Batch: the last record for a key wins, a DeleteSession drops
    earlier puts and updates of its session, an update folds into the put or update before it."""
    apps: dict[str, Any] = {}  # None marks a delete
    sessions: dict[str, Any] = {}
    tasks: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, UpdateTask | TaskUpdate]] = {}
    deleted: dict[str, None] = {}  # an ordered set
    count = 0
    for record, captured in entries:
        count += 1
        if isinstance(record, UpdateTask):  # the most frequent records, so tested first
            _plan_update(record, tasks, updates, merge)
        elif isinstance(record, PutTask):
            task = record.task
            tasks.setdefault(task.session_id, {})[task.id] = captured
            per_session = updates.get(task.session_id)
            if per_session is not None:
                per_session.pop(task.id, None)
        elif isinstance(record, PutSession):
            sessions[record.session.id] = captured
        elif isinstance(record, DeleteSession):
            sessions.pop(record.session_id, None)
            tasks.pop(record.session_id, None)
            updates.pop(record.session_id, None)
            deleted[record.session_id] = None
        elif isinstance(record, PutApplication):
            apps[record.app.name] = captured
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
        updates=[update for per_session in updates.values() for update in per_session.values()],
        records=count,
    )


def _plan_update(
    record: UpdateTask,
    tasks: dict[str, dict[str, Any]],
    updates: dict[str, dict[str, UpdateTask | TaskUpdate]],
    merge: MergeUpdate,
) -> None:
    put = tasks.get(record.session_id)
    if put is not None and record.task_id in put:
        put[record.task_id] = merge(put[record.task_id], record)
        return
    per_session = updates.get(record.session_id)
    if per_session is None:
        per_session = updates[record.session_id] = {}
    earlier = per_session.get(record.task_id)
    if earlier is None:
        per_session[record.task_id] = record  # the common case: one update of a task per batch
    elif isinstance(earlier, UpdateTask):
        folded = TaskUpdate.first(earlier)
        folded.fold(record)
        per_session[record.task_id] = folded
    else:
        earlier.fold(record)


def apply_counts(sessions: Iterable[Session], counts: Iterable[tuple[str, int, int, int | None]]) -> None:
    """Set each session's task counters from (session id, task state, how many, highest numeric id)
    rows, and raise its next_task_id past every stored id, so a session whose tasks were not all
    loaded can never hand out an id again."""
    by_id = {session.id: session for session in sessions}
    for session in by_id.values():
        session.pending = session.running = session.succeed = session.failed = session.cancelled = 0
    for session_id, state, count, highest in counts:
        if session_id not in by_id:
            continue
        session = by_id[session_id]
        if highest is not None and highest >= session.next_task_id:
            session.next_task_id = highest + 1
        if state == TaskState.PENDING:
            session.pending += count
        elif state == TaskState.RUNNING:
            session.running += count
        elif state == TaskState.SUCCEED:
            session.succeed += count
        elif state == TaskState.FAILED:
            session.failed += count
        elif state == TaskState.CANCELLED:
            session.cancelled += count
