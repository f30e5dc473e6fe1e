"""The session manager's state and every operation on it.

One Controller per session manager, used from one event loop. Frontend and
Backend servicers call into it; it knows nothing of gRPC. Task path:
create_tasks (persisted by group commit before it returns) -> queued on the
session -> dispatched to a bound executor with a free slot -> outcome ->
persisted -> watchers notified. Nothing on that path polls or sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial

from flame.errors import AlreadyExists, Internal, InvalidArgument, InvalidState, NotFound
from flame.session_manager import states
from flame.session_manager.appcheck import check_application_schemas, unsupported_shim
from flame.session_manager.records import ExecutorRecord, NodeRecord, SessionRecord, TaskQueue
from flame.session_manager.storage import (
    DeleteApplication,
    DeleteSession,
    PutApplication,
    PutSession,
    PutTask,
    Storage,
    UpdateTask,
)
from flame.types import (
    EVENT_SESSION_BIND_FAILED,
    Application,
    ApplicationSpec,
    Event,
    ExecutorState,
    ResourceRequirement,
    Session,
    SessionSpec,
    SessionState,
    Task,
    TaskState,
    now_ms,
)

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# An executor is given about this much work (in seconds) at a time, judged by how long
# the session's tasks have taken so far.
PIPELINE_SECONDS = 0.02
MAX_WEIGHT = 1e6
# Most tasks one WatchSession message carries.
WATCH_BATCH = 1_000
FINAL_STATES = (TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED)
_NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class ControllerSettings:
    slot: ResourceRequirement = field(default_factory=lambda: ResourceRequirement(cpu=1, memory=1024**3))
    max_sessions: int | None = None
    max_executors: int | None = None
    max_pending_tasks: int | None = None  # per session
    max_task_size: int = 16 * 1024**2  # bytes of one task input or output
    max_common_data_size: int = 16 * 1024**2
    max_bind_failures: int = 3
    max_task_attempts: int = 3
    task_timeout: float | None = None  # seconds; an application's "task_timeout=<s>" label overrides it
    default_delay_release_ms: int = 5_000
    idle_release_ms: int = 5_000
    heartbeat_interval_ms: int = 1_000
    node_lost_ms: int = 10_000
    # Most tasks an executor may hold at once: one running and the rest queued at its node,
    # so a busy executor never waits a round trip for its next task (see Controller.window).
    executor_window: int = 32


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}: expected {_NAME_RULE}")
    return value


def _check_application_spec(name: str, spec: ApplicationSpec) -> None:
    """What Flame checks at registration: schemas are JSON, working_directory is absolute.

    An application without a command, or with a shim no node offers, is accepted as Flame
    accepts it: binding it fails (event 1001), or its sessions wait with an event saying why.
    """
    check_application_schemas(name, spec)
    if spec.working_directory and not spec.working_directory.startswith("/"):
        raise InvalidArgument(
            f"application {name!r}: working_directory must be an absolute path, got {spec.working_directory!r}"
        )
    if spec.max_instances is not None and spec.max_instances < 1:
        raise InvalidArgument(f"application {name!r}: max_instances must be at least 1, got {spec.max_instances}")
    if spec.delay_release is not None and spec.delay_release < 0:
        raise InvalidArgument(f"application {name!r}: delay_release must be >= 0 seconds, got {spec.delay_release}")
    task_timeout_label(name, spec)
    for env in spec.environments:
        if not env or "=" in env:
            raise InvalidArgument(f"application {name!r}: invalid environment variable name {env!r}")


TASK_TIMEOUT_LABEL = "task_timeout="


def task_timeout_label(name: str, spec: ApplicationSpec) -> float | None:
    """The seconds of an application's ``task_timeout=<seconds>`` label, if it has one."""
    for label in spec.labels:
        if label.startswith(TASK_TIMEOUT_LABEL):
            text = label[len(TASK_TIMEOUT_LABEL) :]
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not 0 < value < 10**7:
                raise InvalidArgument(
                    f"application {name!r}: invalid label {label!r}: "
                    "expected task_timeout=<seconds>, e.g. task_timeout=30"
                )
            return value
    return None


class Controller:
    """Applications, sessions, tasks, executors and nodes, in memory and in storage."""

    def __init__(self, storage: Storage, settings: ControllerSettings) -> None:
        self.storage = storage
        self.settings = settings
        self.applications: dict[str, Application] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.executors: dict[str, ExecutorRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self._kick = asyncio.Event()
        # Called with a session's record when it closes (the fleet unbinds its executors).
        self.on_session_closed: list[Callable[[SessionRecord], None]] = []
        # Called with a session's changed tasks once they are committed, before watchers hear of
        # them: finished tasks and tasks that went back to Pending (metrics and the dashboard).
        self.on_tasks_committed: list[Callable[[SessionRecord, list[Task]], None]] = []

    # ---- start-up -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Load state from storage; tasks that were running go back to Pending.

        Only what open sessions still need stays in memory: their unfinished tasks. Finished
        tasks, and every task of a closed session, are read from storage when asked for.
        """
        stored = await self.storage.load(closed_tasks=False, finished_tasks=False)
        for app in stored.applications:
            self.applications[app.name] = app
        for session in stored.sessions:  # its counters and next_task_id account for all its stored tasks
            self.sessions[session.id] = SessionRecord(session)
        requeued: list[Task] = []
        for task in stored.tasks:
            rec = self.sessions.get(task.session_id)
            if rec is None:
                continue
            if task.state == TaskState.RUNNING:
                self.move_task(rec, task, TaskState.PENDING, "requeued after a session manager restart")
                requeued.append(task)
            rec.tasks[task.id] = task
            rec.pending.append(task.id)
        if requeued:
            await self.storage.write(*(UpdateTask.of(t, t.events[-1]) for t in requeued))
        logger.info(
            "recovered %d applications, %d sessions, %d tasks (%d requeued)",
            len(self.applications),
            len(self.sessions),
            len(stored.tasks),
            len(requeued),
        )

    # ---- applications ---------------------------------------------------------------------

    async def register_application(self, name: str, spec: ApplicationSpec) -> Application:
        check_name(name, "application name")
        _check_application_spec(name, spec)
        if name in self.applications:
            raise AlreadyExists(f"application {name!r} is already registered; use update to change it")
        app = Application(name=name, spec=spec)
        self.applications[name] = app
        await self.storage.write(PutApplication(app))
        logger.info("application %s registered", name)
        return app

    async def update_application(self, name: str, spec: ApplicationSpec) -> Application:
        app = self.get_application(name)
        _check_application_spec(name, spec)
        app.spec = spec
        await self.storage.write(PutApplication(app))
        logger.info("application %s updated", name)
        return app

    async def unregister_application(self, name: str) -> None:
        self.get_application(name)
        open_sessions = [
            r.id
            for r in self.sessions.values()
            if r.session.spec.application == name and r.session.state == SessionState.OPEN
        ]
        if open_sessions:
            shown = ", ".join(open_sessions[:5]) + (" ..." if len(open_sessions) > 5 else "")
            raise InvalidState(
                f"application {name!r} has {len(open_sessions)} open session(s) ({shown}); close them first"
            )
        del self.applications[name]
        await self.storage.write(DeleteApplication(name))
        logger.info("application %s unregistered", name)

    def get_application(self, name: str) -> Application:
        try:
            return self.applications[name]
        except KeyError:
            raise NotFound(f"application <{name}> not found") from None

    # ---- sessions -------------------------------------------------------------------------

    def get_session_record(self, session_id: str) -> SessionRecord:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound(f"session <{session_id}> not found") from None

    def _validate_session_spec(self, spec: SessionSpec) -> Application:
        if not spec.application:
            raise InvalidArgument("session spec: application is required")
        app = self.get_application(spec.application)
        if spec.max_instances is not None and spec.max_instances < 1:
            raise InvalidArgument(f"session spec: max_instances must be at least 1, got {spec.max_instances}")
        if spec.max_instances is not None and spec.min_instances > spec.max_instances:
            raise InvalidArgument(
                f"session spec: min_instances ({spec.min_instances}) is greater than "
                f"max_instances ({spec.max_instances})"
            )
        size = len(spec.common_data or b"")
        if size > self.settings.max_common_data_size:
            raise InvalidArgument(
                f"session spec: common data is {size} bytes; the limit "
                f"(cluster.limits.max_common_data_size) is {self.settings.max_common_data_size} bytes"
            )
        if spec.resreq is not None and spec.resreq.cpu == 0 and spec.resreq.memory == 0 and spec.resreq.gpu == 0:
            raise InvalidArgument("session spec: resreq asks for nothing; give cpu, mem or gpu (e.g. cpu=1,mem=1g)")
        return app

    async def create_session(self, session_id: str, spec: SessionSpec) -> Session:
        self._validate_session_spec(spec)
        if not session_id:
            session_id = f"{spec.application}-{secrets.token_hex(4)}"
        check_name(session_id, "session id")
        if session_id in self.sessions:
            raise AlreadyExists(f"session {session_id!r} exists already; use open_session to reuse it")
        limit = self.settings.max_sessions
        if limit is not None:
            open_count = sum(1 for r in self.sessions.values() if r.session.state == SessionState.OPEN)
            if open_count >= limit:
                raise InvalidState(
                    f"the cluster limit max_sessions={limit} open sessions is reached; close a session first"
                )
        if spec.batch_size == 0:
            spec = replace(spec, batch_size=1)
        session = Session(id=session_id, spec=spec)
        rec = SessionRecord(session)
        self.sessions[session_id] = rec
        await self.storage.write(PutSession(session))
        logger.info("session %s opened for application %s", session_id, spec.application)
        waiting = unsupported_shim(self.applications[spec.application])
        if waiting is not None:  # Flame accepts it and its tasks stay pending: say why
            self.session_event(rec, EVENT_SESSION_BIND_FAILED, waiting)
        self.kick()
        return session

    async def open_session(self, session_id: str, spec: SessionSpec | None) -> Session:
        rec = self.sessions.get(session_id)
        if rec is None:
            if spec is None:
                raise NotFound(f"session <{session_id}> not found (and no spec was given to create it)")
            return await self.create_session(session_id, spec)
        if rec.session.state != SessionState.OPEN:
            raise InvalidState(f"session {session_id!r} is closed")
        if spec is not None:
            have = rec.session.spec
            for name in ("application", "common_data", "min_instances", "max_instances", "priority"):
                if getattr(spec, name) != getattr(have, name):
                    raise InvalidArgument(
                        f"session {session_id!r} exists with a different {name} "
                        f"({getattr(have, name)!r} != {getattr(spec, name)!r})"
                    )
        return rec.session

    async def set_session_weight(self, session_id: str, weight: float) -> Session:
        rec = self.get_session_record(session_id)
        if not 0 < weight <= MAX_WEIGHT:  # also refuses NaN
            raise InvalidArgument(f"invalid weight {weight!r} for session {session_id!r}: expected 0 < weight <= 1e6")
        if rec.session.state != SessionState.OPEN:
            raise InvalidState(f"session {session_id!r} is closed")
        rec.session.spec = replace(rec.session.spec, weight=weight)
        await self.storage.write(PutSession(rec.session))
        self.kick()
        return rec.session

    async def close_session(self, session_id: str) -> Session:
        """Close the session and cancel its pending tasks; nothing changes unless that commits.

        While the commit is in flight the session takes no tasks and dispatches none, so the
        pending tasks written as cancelled are exactly those cancelled in memory afterwards.
        """
        rec = self.get_session_record(session_id)
        session = rec.session
        if session.state == SessionState.CLOSED:
            return session
        if rec.closing is not None:  # another close is committing: share its outcome
            await asyncio.shield(rec.closing)
            return session
        states.check(states.SESSION_TRANSITIONS, session.state, SessionState.CLOSED, f"session {session_id}")
        rec.closing = asyncio.get_running_loop().create_future()
        closed_at = now_ms()
        why = "session closed"
        reason = Event(int(TaskState.CANCELLED), why, closed_at)
        closed = replace(session, state=SessionState.CLOSED, completion_time=closed_at)
        updates = [self._cancel_record(rec.tasks[t], reason) for t in rec.pending]
        try:
            await self.storage.write(PutSession(closed), *updates)
        except BaseException as exc:
            rec.closing.set_exception(exc)
            rec.closing.exception()  # retrieved: a close waiting on it raises its own copy
            rec.closing = None
            raise
        written = {u.task_id for u in updates}
        session.state, session.completion_time = SessionState.CLOSED, closed_at
        cancelled = self.drop_pending(rec, TaskState.CANCELLED, why, at=closed_at)
        late = [t for t in cancelled if t.id not in written]  # went back to pending meanwhile
        rec.closing.set_result(None)
        rec.closing = None
        self.publish(rec, [t for t in cancelled if t.id in written])
        if late:
            self.commit_and_publish(rec, late)
        for hook in self.on_session_closed:
            hook(rec)
        logger.info("session %s closed (%d pending tasks cancelled)", session_id, len(cancelled))
        self.kick()
        return session

    @staticmethod
    def _cancel_record(task: Task, event: Event) -> UpdateTask:
        return UpdateTask(
            session_id=task.session_id,
            task_id=task.id,
            state=TaskState.CANCELLED,
            attempts=task.attempts,
            output=None,
            completion_time=event.creation_time,
            event=event,
        )

    async def delete_session(self, session_id: str) -> Session:
        rec = self.get_session_record(session_id)
        if rec.session.state == SessionState.OPEN:
            raise InvalidState(f"session {session_id!r} is open; close it before deleting it")
        del self.sessions[session_id]
        self._end_watchers(rec)
        await self.storage.write(DeleteSession(session_id))
        logger.info("session %s deleted", session_id)
        return rec.session

    def session_event(self, rec: SessionRecord, code: int, message: str) -> None:
        rec.session.events.append(Event(code, message))
        self.storage.write_nowait(PutSession(rec.session))

    # ---- tasks ----------------------------------------------------------------------------

    async def create_tasks(self, session_id: str, inputs: Iterable[bytes | None]) -> list[Task]:
        """Create tasks; they may be dispatched at once, and are acknowledged once their creation
        commits (a result reaches watchers only after its own, later commit). If the creation
        fails to commit, the tasks are forgotten again and the error is raised."""
        rec = self.get_session_record(session_id)
        session = rec.session
        if session.state != SessionState.OPEN or rec.closing is not None:
            raise InvalidState(f"session {session_id!r} is closed; tasks can only be added to an open session")
        inputs = list(inputs)
        self._check_task_limits(session, inputs)
        if not inputs:
            return []
        first = session.next_task_id
        created = now_ms()
        event = Event(int(TaskState.PENDING), "task created", created)  # frozen: one serves them all
        tasks = [
            Task(session_id=session_id, id=str(first + offset), input=data, creation_time=created, events=[event])
            for offset, data in enumerate(inputs)
        ]
        committed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.storage.write_nowait(*(PutTask(t) for t in tasks), on_commit=partial(_settle, committed))
        session.next_task_id += len(tasks)
        session.pending += len(tasks)
        for task in tasks:
            rec.tasks[task.id] = task
        rec.pending.extend(t.id for t in tasks)
        self.dispatch(rec)
        if len(rec.executors) < len(rec.pending) + session.running:
            self.kick()
        error = await committed
        if error is not None:
            self._forget_tasks(rec, tasks)
            raise Internal(f"the new tasks of session {session_id!r} could not be stored: {error}") from error
        return tasks

    def _forget_tasks(self, rec: SessionRecord, tasks: list[Task]) -> None:
        """Undo tasks whose creation did not commit: they leave memory; their outcomes will be ignored."""
        gone = {t.id for t in tasks}
        for task in tasks:
            rec.tasks.pop(task.id, None)
            self._count(rec.session, task.state, -1)
        rec.pending = deque(t for t in rec.pending if t not in gone)
        for executor_id in rec.executors:
            inflight = self.executors[executor_id].inflight
            for task_id in gone & inflight.keys():
                del inflight[task_id]

    async def cancel_tasks(self, session_id: str, task_ids: Iterable[str]) -> list[Task]:
        """Cancel those of ``task_ids`` that are still Pending; return them."""
        rec = self.get_session_record(session_id)
        cancelled = []
        for task_id in dict.fromkeys(task_ids):
            task = rec.tasks.get(task_id)
            if task is not None and task.state == TaskState.PENDING:
                self.finish_task(rec, task, TaskState.CANCELLED, "cancelled by the client")
                cancelled.append(task)
        if cancelled:
            gone = {t.id for t in cancelled}
            rec.pending = deque(t for t in rec.pending if t not in gone)
            await self.storage.write(*(UpdateTask.of(t, t.events[-1]) for t in cancelled))
            self.publish(rec, cancelled)
        return cancelled

    def _check_task_limits(self, session: Session, inputs: list[bytes | None]) -> None:
        limit = self.settings.max_task_size
        for index, data in enumerate(inputs):
            if data is not None and len(data) > limit:
                raise InvalidArgument(
                    f"task input #{index + 1} is {len(data)} bytes; the limit "
                    f"(cluster.limits.max_task_size) is {limit} bytes"
                )
        cap = self.settings.max_pending_tasks
        if cap is not None and session.pending + len(inputs) > cap:
            raise InvalidState(
                f"session {session.id!r} has {session.pending} pending tasks; adding {len(inputs)} would pass "
                f"the limit (cluster.limits.max_pending_tasks) of {cap}; wait for some to finish"
            )

    async def get_task(self, session_id: str, task_id: str) -> Task:
        """An unfinished task from memory; a finished one (no longer in memory) from storage."""
        rec = self.get_session_record(session_id)
        task = rec.tasks.get(task_id) or await self.storage.get_task(session_id, task_id)
        if task is None:
            raise NotFound(f"task <{task_id}> not found in session <{session_id}>")
        return task

    async def list_tasks(self, session_id: str) -> list[Task]:
        """Every task of the session in id order: as stored, with the live copy of each unfinished one."""
        rec = self.get_session_record(session_id)
        stored = await self.storage.list_tasks(session_id)
        return [rec.tasks.get(task.id, task) for task in stored]

    async def watch_task(self, session_id: str, task_id: str) -> AsyncIterator[Task]:
        """The task now, then after each change; ends after a final state."""
        rec = self.get_session_record(session_id)
        task = await self.get_task(session_id, task_id)
        if task.state.is_final:
            yield task
            return
        queue: TaskQueue = asyncio.Queue()
        rec.task_watchers.setdefault(task_id, []).append(queue)
        try:
            yield task
            while True:
                item = await queue.get()
                if item is None:
                    return
                # The object lives on: judge by the state it has as it is sent, not when we resume.
                final = item.state.is_final
                yield item
                if final:
                    return
        finally:
            watchers = rec.task_watchers.get(task_id)
            if watchers is not None and queue in watchers:
                watchers.remove(queue)
                if not watchers:
                    del rec.task_watchers[task_id]

    def watch_session(self, session_id: str, include_completed: bool) -> AsyncIterator[list[Task]]:
        """Batches of tasks that reached a final state; ends when the session is finished.

        The watcher is registered before this returns (not at the first iteration).
        """
        rec = self.get_session_record(session_id)
        queue: TaskQueue = asyncio.Queue()
        rec.session_watchers.append(queue)
        return self._session_batches(rec, queue, include_completed)

    async def _session_batches(
        self, rec: SessionRecord, queue: TaskQueue, include_completed: bool
    ) -> AsyncIterator[list[Task]]:
        try:
            if include_completed:  # the committed ones; any finishing meanwhile also come through the queue
                replay = await self.storage.list_tasks(rec.id, states=FINAL_STATES)
                for start in range(0, len(replay), WATCH_BATCH):
                    yield replay[start : start + WATCH_BATCH]
            if rec.finished and queue.empty():  # finished before the watch began: no end marker comes
                return
            ended = False
            while not ended:
                first = await queue.get()
                batch = [] if first is None else [first]
                ended = first is None
                while not ended and not queue.empty() and len(batch) < WATCH_BATCH:
                    item = queue.get_nowait()
                    if item is None:
                        ended = True
                    else:
                        batch.append(item)
                if batch:
                    yield batch
        finally:
            if queue in rec.session_watchers:
                rec.session_watchers.remove(queue)

    # ---- task state changes (shared by the frontend and backend paths) --------------------

    @staticmethod
    def _count(session: Session, state: TaskState, delta: int) -> None:
        name = {
            TaskState.PENDING: "pending",
            TaskState.RUNNING: "running",
            TaskState.SUCCEED: "succeed",
            TaskState.FAILED: "failed",
            TaskState.CANCELLED: "cancelled",
        }[state]
        setattr(session, name, getattr(session, name) + delta)

    def move_task(
        self, rec: SessionRecord, task: Task, new: TaskState, message: str | None, at: int | None = None
    ) -> None:
        task.state, old = (
            states.check(states.TASK_TRANSITIONS, task.state, new, f"task {task.session_id}/{task.id}"),
            task.state,
        )
        self._count(rec.session, old, -1)
        self._count(rec.session, new, +1)
        task.events.append(Event(int(new), message, now_ms() if at is None else at))

    def finish_task(
        self,
        rec: SessionRecord,
        task: Task,
        new: TaskState,
        message: str | None,
        output: bytes | None = None,
        at: int | None = None,
    ) -> None:
        at = now_ms() if at is None else at
        self.move_task(rec, task, new, message, at)
        task.output = output
        task.completion_time = at

    def drop_pending(self, rec: SessionRecord, state: TaskState, reason: str, at: int | None = None) -> list[Task]:
        dropped = []
        while rec.pending:
            task = rec.tasks[rec.pending.popleft()]
            self.finish_task(rec, task, state, reason, at=at)
            dropped.append(task)
        return dropped

    def commit_and_publish(self, rec: SessionRecord, tasks: list[Task]) -> None:
        """Store the tasks' changes (each task's newest event with it) and tell watchers once that
        commits: the one way task changes reach storage and watchers after creation."""
        if tasks:
            records = [UpdateTask.of(t, t.events[-1] if t.events else None) for t in tasks]
            states = [t.state for t in tasks]
            self.storage.write_nowait(*records, on_commit=partial(self._committed, rec, tasks, states))

    def _committed(
        self, rec: SessionRecord, tasks: list[Task], states: list[TaskState], error: BaseException | None
    ) -> None:
        if error is None:
            # A task that moved on since is published by the commit of its newer state.
            self.publish(rec, [t for t, state in zip(tasks, states, strict=True) if t.state == state])
        else:  # memory keeps the change; a restart finds the stored state and runs the task again
            logger.error(
                "session %s: %d task change(s) were not stored (%s); watchers not told", rec.id, len(tasks), error
            )

    def publish(self, rec: SessionRecord, tasks: Iterable[Task]) -> None:
        """Tell watchers about changed tasks (after they were committed). A finished task then
        leaves memory: storage has it, and that is where GetTask and ListTask find it."""
        tasks = list(tasks)
        for hook in self.on_tasks_committed:
            hook(rec, tasks)
        for task in tasks:
            for queue in rec.task_watchers.get(task.id, ()):
                queue.put_nowait(task)
            if task.state.is_final:
                for queue in rec.session_watchers:
                    queue.put_nowait(task)
                if rec.tasks.get(task.id) is task:
                    del rec.tasks[task.id]
        if rec.finished:
            self._end_watchers(rec)

    @staticmethod
    def _end_watchers(rec: SessionRecord) -> None:
        for queue in rec.session_watchers:
            queue.put_nowait(None)
        for queues in rec.task_watchers.values():
            for queue in queues:
                queue.put_nowait(None)

    # ---- dispatch -------------------------------------------------------------------------

    def dispatch(self, rec: SessionRecord, only: Iterable[str] | None = None) -> None:
        """Hand pending tasks to this session's bound executors (or just ``only``) that have room."""
        if not rec.pending or not rec.executors or rec.closing is not None:
            return
        candidates = rec.executors if only is None else [e for e in only if e in rec.executors]
        bound = [ex for e in candidates if (ex := self.executors[e]).executor.state == ExecutorState.BOUND]
        if not bound:
            return
        # Beyond one task each, keep enough of the backlog for the executors still binding,
        # so that they too get work when they come up.
        binding = sum(1 for e in rec.executors if self.executors[e].executor.state != ExecutorState.BOUND)
        window = self.window(rec)
        started: list[Task] = []
        for ex in bound:
            while rec.pending and len(ex.inflight) < window and (not ex.inflight or len(rec.pending) > binding):
                started.append(self._start(rec, ex))
            if not rec.pending:
                break
        self.commit_and_publish(rec, started)

    def window(self, rec: SessionRecord) -> int:
        """Tasks one executor of this session may hold: enough for about PIPELINE_SECONDS of work.

        Short tasks get a deep pipeline (few, large messages between the managers); tasks
        longer than that get one queued behind the running one, at most.
        """
        if rec.task_seconds is None:
            return 2
        depth = int(PIPELINE_SECONDS / max(rec.task_seconds, 1e-6))
        return max(2, min(self.settings.executor_window, depth))

    def task_done(self, rec: SessionRecord, ex: ExecutorRecord, sent: float) -> None:
        """Account for a task an executor finished: its busy time feeds the session's average."""
        now = time.monotonic()
        busy = now - max(sent, ex.last_done)
        ex.last_done = now
        rec.task_seconds = busy if rec.task_seconds is None else 0.8 * rec.task_seconds + 0.2 * busy
        if not ex.inflight:
            ex.idle_since = now_ms()

    def _start(self, rec: SessionRecord, ex: ExecutorRecord) -> Task:
        task = rec.tasks[rec.pending.popleft()]
        self.move_task(rec, task, TaskState.RUNNING, f"running on executor {ex.id}")
        task.attempts += 1
        ex.inflight[task.id] = time.monotonic()
        link = self.nodes[ex.executor.node].link
        if link is not None:
            link.run(ex.id, task)
        return task

    # ---- scheduling hooks -----------------------------------------------------------------

    def kick(self) -> None:
        """Ask the scheduler loop for a cycle now instead of at its next interval."""
        self._kick.set()

    async def wait_for_kick(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout)
        self._kick.clear()


def _settle(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():
        future.set_result(error)
