"""The session manager's core: its whole state, changed only by ``handle(event) -> effects``.

No I/O happens here: no storage, no streams, no asyncio. A request is checked before anything
changes, and a refused one raises with the state untouched. What must be durable first (an
application, a session, a close) is asked for as a ``Commit`` whose ``then`` event applies it
once stored, and whose ``undo`` event puts back the little a pending commit holds (a closing
session takes no tasks meanwhile). Task changes on the hot path apply at once and are stored
after; watchers hear of them only from the ``then`` of the commit that stored them. The
controller performs the effects (flame.session_manager.controller), the fleet half of the
core handles executors and nodes (flame.session_manager.fleet). Task path: CreateTasks ->
queued on the session -> run on a bound executor with room -> outcome in a NodeMessage ->
Commit -> TasksStored -> Notify. Nothing on that path polls or sleeps.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from flame.errors import AlreadyExists, FlameError, InvalidArgument, InvalidState, NotFound
from flame.session_manager import effects as fx
from flame.session_manager import states
from flame.session_manager.appcheck import check_application_spec, unsupported_shim
from flame.session_manager.fleet import Fleet
from flame.session_manager.records import ExecutorRecord, NodeRecord, SessionRecord
from flame.session_manager.storage import DeleteApplication, PutApplication, PutSession, PutTask, UpdateTask
from flame.session_manager.storage import DeleteSession as DeleteSessionRecord
from flame.types import (
    EVENT_SESSION_BIND_FAILED,
    Application,
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
_BOUND = ExecutorState.BOUND
_FINAL = frozenset({TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED})
_RUNNING_CODE = int(TaskState.RUNNING)
_NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
_COUNTERS = {
    TaskState.PENDING: "pending",
    TaskState.RUNNING: "running",
    TaskState.SUCCEED: "succeed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}


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
    # so a busy executor never waits a round trip for its next task (see Core.window).
    executor_window: int = 32


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}: expected {_NAME_RULE}")
    return value


def _cancel_record(task: Task, event: Event) -> UpdateTask:
    return UpdateTask(task.session_id, task.id, TaskState.CANCELLED, task.attempts, None, event.creation_time, event)


class Core:
    """Applications, sessions, tasks, executors and nodes in memory; ``handle`` changes them."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.applications: dict[str, Application] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.executors: dict[str, ExecutorRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.out = fx.Effects()  # the effects of the event being handled
        self.fleet = Fleet(self)
        f = self.fleet
        self._handlers: dict[type, Callable[[Any], object]] = {
            fx.RegisterApplication: self._register_application,
            fx.UpdateApplication: self._update_application,
            fx.UnregisterApplication: self._unregister_application,
            fx.ApplicationStored: self._application_stored,
            fx.ApplicationDeleted: self._application_deleted,
            fx.CreateSession: self._create_session,
            fx.SessionStored: self._session_stored,
            fx.SetSessionWeight: self._set_session_weight,
            fx.WeightStored: self._weight_stored,
            fx.CloseSession: self._close_session,
            fx.CloseStored: self._close_stored,
            fx.CloseFailed: self._close_failed,
            fx.DeleteSession: self._delete_session,
            fx.SessionDeleted: self._session_deleted,
            fx.SessionEvent: self._session_event,
            fx.GiveUp: self._give_up,
            fx.CreateTasks: self._create_tasks,
            fx.TasksNotStored: self._tasks_not_stored,
            fx.CancelTasks: self._cancel_tasks,
            fx.TasksStored: self._tasks_stored,
            fx.Recovered: self._recovered,
            fx.NodeConnected: f.node_connected,
            fx.NodeDisconnected: f.node_disconnected,
            fx.NodeMessage: f.node_message,
            fx.CheckNodes: f.check_nodes,
            fx.LoseNode: f.lose_node,
            fx.ApplyDecision: f.apply,
        }

    def handle(self, event: fx.Event) -> fx.Effects:
        """Apply ``event``; return what must happen for it, in order (``value``: the caller's answer).

        A refused event raises a FlameError and asks for nothing: it changed nothing.
        """
        out = self.out = fx.Effects()
        try:
            out.value = self._handlers[type(event)](event)
        except FlameError:
            assert not out, f"{type(event).__name__} asked for effects and then refused"
            raise
        finally:
            self.out = fx.Effects()
        return out

    # ---- reads ----------------------------------------------------------------------------

    def get_application(self, name: str) -> Application:
        try:
            return self.applications[name]
        except KeyError:
            raise NotFound(f"application <{name}> not found") from None

    def get_session_record(self, session_id: str) -> SessionRecord:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound(f"session <{session_id}> not found") from None

    def check_open(self, session_id: str, spec: SessionSpec | None) -> Session | None:
        """open_session's check: the open session, or None if there is none (and ``spec`` says how
        to create it); a closed one or a different spec is refused."""
        rec = self.sessions.get(session_id)
        if rec is None:
            if spec is None:
                raise NotFound(f"session <{session_id}> not found (and no spec was given to create it)")
            return None
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

    # ---- start-up -------------------------------------------------------------------------

    def _recovered(self, event: fx.Recovered) -> int:
        """Take what storage holds; tasks that were running go back to Pending (stored again)."""
        stored = event.stored
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
            self.out.append(fx.Commit(tuple(UpdateTask.of(t, t.events[-1]) for t in requeued), ack=True))
        logger.info(
            "recovered %d applications, %d sessions, %d tasks (%d requeued)",
            len(self.applications),
            len(self.sessions),
            len(stored.tasks),
            len(requeued),
        )
        return len(requeued)

    # ---- applications ---------------------------------------------------------------------

    def _register_application(self, event: fx.RegisterApplication) -> Application:
        name, spec = event
        check_name(name, "application name")
        check_application_spec(name, spec)
        if name in self.applications:
            raise AlreadyExists(f"application {name!r} is already registered; use update to change it")
        app = Application(name=name, spec=spec)
        self.out.append(fx.Commit((PutApplication(app),), then=fx.ApplicationStored(app), ack=True))
        return app

    def _update_application(self, event: fx.UpdateApplication) -> Application:
        name, spec = event
        app = replace(self.get_application(name), spec=spec)
        check_application_spec(name, spec)
        self.out.append(fx.Commit((PutApplication(app),), then=fx.ApplicationStored(app), ack=True))
        return app

    def _application_stored(self, event: fx.ApplicationStored) -> None:
        app = event.app
        have = self.applications.get(app.name)
        if have is None:
            self.applications[app.name] = app
            logger.info("application %s registered", app.name)
        else:  # the same object stays: sessions and the scheduler hold it
            have.spec = app.spec
            logger.info("application %s updated", app.name)

    def _unregister_application(self, event: fx.UnregisterApplication) -> None:
        name = event.name
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
        self.out.append(fx.Commit((DeleteApplication(name),), then=fx.ApplicationDeleted(name), ack=True))

    def _application_deleted(self, event: fx.ApplicationDeleted) -> None:
        self.applications.pop(event.name, None)
        logger.info("application %s unregistered", event.name)

    # ---- sessions -------------------------------------------------------------------------

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

    def _create_session(self, event: fx.CreateSession) -> Session:
        session_id, spec = event
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
        self.out.append(fx.Commit((PutSession(session),), then=fx.SessionStored(session), ack=True))
        return session

    def _session_stored(self, event: fx.SessionStored) -> None:
        session = event.session
        rec = self.sessions[session.id] = SessionRecord(session)
        logger.info("session %s opened for application %s", session.id, session.spec.application)
        app = self.applications.get(session.spec.application)
        waiting = unsupported_shim(app) if app is not None else None
        if waiting is not None:  # Flame accepts it and its tasks stay pending: say why
            self.session_event(rec, EVENT_SESSION_BIND_FAILED, waiting)
        self.kick()

    def _set_session_weight(self, event: fx.SetSessionWeight) -> Session:
        session_id, weight = event
        rec = self.get_session_record(session_id)
        if not 0 < weight <= MAX_WEIGHT:  # also refuses NaN
            raise InvalidArgument(f"invalid weight {weight!r} for session {session_id!r}: expected 0 < weight <= 1e6")
        if rec.session.state != SessionState.OPEN or rec.closing_at is not None:
            raise InvalidState(f"session {session_id!r} is closed")
        weighed = replace(rec.session, spec=replace(rec.session.spec, weight=weight))
        self.out.append(fx.Commit((PutSession(weighed),), then=fx.WeightStored(session_id, weight), ack=True))
        return rec.session

    def _weight_stored(self, event: fx.WeightStored) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is not None:
            rec.session.spec = replace(rec.session.spec, weight=event.weight)
            self.kick()

    def _close_session(self, event: fx.CloseSession) -> Session:
        """Ask to store the session closed and its pending tasks cancelled; CloseStored applies it.

        While the commit is in flight the session takes no tasks and dispatches none, so the
        pending tasks written as cancelled are exactly those cancelled in memory afterwards.
        """
        rec = self.get_session_record(event.session_id)
        session = rec.session
        if session.state == SessionState.CLOSED:
            return session
        if rec.closing_at is not None:
            raise InvalidState(f"session {session.id!r} is being closed already")
        states.check(states.SESSION_TRANSITIONS, session.state, SessionState.CLOSED, f"session {session.id}")
        closed_at = rec.closing_at = now_ms()
        reason = Event(int(TaskState.CANCELLED), "session closed", closed_at)
        updates = [_cancel_record(rec.tasks[t], reason) for t in rec.pending]
        written = frozenset(u.task_id for u in updates)
        self.out.append(
            fx.Commit(
                (PutSession(self._as_stored(rec)), *updates),
                then=fx.CloseStored(session.id, closed_at, written),
                undo=fx.CloseFailed(session.id),
                ack=True,
            )
        )
        return session

    @staticmethod
    def _as_stored(rec: SessionRecord) -> Session:
        """The session as it must be stored: closed already while its close commits."""
        if rec.closing_at is None:
            return rec.session
        return replace(rec.session, state=SessionState.CLOSED, completion_time=rec.closing_at)

    def _close_failed(self, event: fx.CloseFailed) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is not None:
            rec.closing_at = None
            self.dispatch(rec)  # what arrived back meanwhile

    def _close_stored(self, event: fx.CloseStored) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is None:
            return
        session = rec.session
        rec.closing_at = None
        session.state, session.completion_time = SessionState.CLOSED, event.closed_at
        cancelled = self.drop_pending(rec, TaskState.CANCELLED, "session closed", at=event.closed_at)
        self._published(rec, [t for t in cancelled if t.id in event.written])
        late = [t for t in cancelled if t.id not in event.written]  # went back to pending meanwhile
        if late:
            self.commit_and_publish(rec, late)
        self.fleet.session_closed(rec)
        logger.info("session %s closed (%d pending tasks cancelled)", session.id, len(cancelled))
        self.kick()

    def _delete_session(self, event: fx.DeleteSession) -> Session:
        rec = self.get_session_record(event.session_id)
        if rec.session.state == SessionState.OPEN:
            raise InvalidState(f"session {rec.id!r} is open; close it before deleting it")
        self.out.append(fx.Commit((DeleteSessionRecord(rec.id),), then=fx.SessionDeleted(rec.id), ack=True))
        return rec.session

    def _session_deleted(self, event: fx.SessionDeleted) -> None:
        if self.sessions.pop(event.session_id, None) is not None:
            self.out.append(fx.EndWatches(event.session_id))
            logger.info("session %s deleted", event.session_id)

    def session_event(self, rec: SessionRecord, code: int, message: str) -> None:
        rec.session.events.append(Event(code, message))
        self.out.append(fx.Commit((PutSession(self._as_stored(rec)),)))

    def _session_event(self, event: fx.SessionEvent) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is not None:
            self.session_event(rec, event.code, event.message)

    def _give_up(self, event: fx.GiveUp) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is None:
            return
        rec.gave_up = True
        self.session_event(rec, event.code, event.reason)
        if not rec.executors:
            self.commit_and_publish(rec, self.drop_pending(rec, TaskState.FAILED, event.reason))
        self.kick()

    # ---- tasks ----------------------------------------------------------------------------

    def _create_tasks(self, event: fx.CreateTasks) -> list[Task]:
        """Create tasks; they may be dispatched at once, and are acknowledged once their creation
        commits (a result reaches watchers only after its own, later commit). If the creation
        fails to commit, TasksNotStored forgets them again."""
        session_id, inputs = event
        rec = self.get_session_record(session_id)
        session = rec.session
        if session.state != SessionState.OPEN or rec.closing_at is not None:
            raise InvalidState(f"session {session_id!r} is closed; tasks can only be added to an open session")
        self._check_task_limits(session, inputs)
        if not inputs:
            return []
        first = session.next_task_id
        created = now_ms()
        created_event = Event(int(TaskState.PENDING), "task created", created)  # frozen: one serves them all
        tasks = [
            Task(
                session_id=session_id, id=str(first + offset), input=data, creation_time=created, events=[created_event]
            )
            for offset, data in enumerate(inputs)
        ]
        session.next_task_id += len(tasks)
        session.pending += len(tasks)
        for task in tasks:
            rec.tasks[task.id] = task
        rec.pending.extend(t.id for t in tasks)
        self.dispatch(rec)
        # After the dispatch: storage takes a put as the task is when the effect runs, so the put
        # comes last, already holding the starts (which it then supersedes in the batch). Before
        # them, a started task would be stored with its running event twice.
        ids = frozenset(t.id for t in tasks)
        self.out.append(fx.Commit(tuple(PutTask(t) for t in tasks), undo=fx.TasksNotStored(session_id, ids), ack=True))
        if len(rec.executors) < len(rec.pending) + session.running:
            self.kick()
        return tasks

    def _tasks_not_stored(self, event: fx.TasksNotStored) -> None:
        """Undo tasks whose creation did not commit: they leave memory; their outcomes will be ignored."""
        rec = self.sessions.get(event.session_id)
        if rec is None:
            return
        gone = event.task_ids
        for task_id in gone:
            task = rec.tasks.pop(task_id, None)
            if task is not None:
                self._count(rec.session, task.state, -1)
        rec.pending = deque(t for t in rec.pending if t not in gone)
        for executor_id in rec.executors:
            inflight = self.executors[executor_id].inflight
            for task_id in gone & inflight.keys():
                del inflight[task_id]

    def _cancel_tasks(self, event: fx.CancelTasks) -> list[Task]:
        """Cancel those of ``task_ids`` that are still Pending; return them (acknowledged once stored)."""
        rec = self.get_session_record(event.session_id)
        cancelled = []
        for task_id in dict.fromkeys(event.task_ids):
            task = rec.tasks.get(task_id)
            if task is not None and task.state == TaskState.PENDING:
                self.finish_task(rec, task, TaskState.CANCELLED, "cancelled by the client")
                cancelled.append(task)
        if cancelled:
            gone = {t.id for t in cancelled}
            rec.pending = deque(t for t in rec.pending if t not in gone)
            self.commit_and_publish(rec, cancelled, ack=True)
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

    # ---- task state changes (shared with the fleet) ---------------------------------------

    @staticmethod
    def _count(session: Session, state: TaskState, delta: int) -> None:
        name = _COUNTERS[state]
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

    def commit_and_publish(self, rec: SessionRecord, tasks: list[Task], *, ack: bool = False) -> None:
        """Store the tasks' changes (each task's newest event with it); watchers hear of them once
        that commits: the one way task changes reach storage and watchers after creation."""
        if tasks:
            records = tuple([UpdateTask.of(t, t.events[-1] if t.events else None) for t in tasks])
            stored = fx.TasksStored(rec.id, tasks, [t.state for t in tasks])
            self.out.append(fx.Commit(records, then=stored, ack=ack))

    def _tasks_stored(self, event: fx.TasksStored) -> None:
        rec = self.sessions.get(event.session_id)
        if rec is None:  # deleted meanwhile: its watchers were ended
            return
        # A task that moved on since is published by the commit of its newer state.
        self._published(rec, [t for t, state in zip(event.tasks, event.states, strict=True) if t.state == state])

    def _published(self, rec: SessionRecord, tasks: list[Task]) -> None:
        """Committed changes: tell watchers; a finished task then leaves memory (storage has it,
        and that is where GetTask and ListTask find it)."""
        self.out.append(fx.Notify(rec, tasks))
        for task in tasks:
            if task.state in _FINAL and rec.tasks.get(task.id) is task:
                del rec.tasks[task.id]
        if rec.finished:
            self.out.append(fx.EndWatches(rec.id))

    # ---- dispatch -------------------------------------------------------------------------

    def dispatch(self, rec: SessionRecord, only: Iterable[str] | None = None) -> None:
        """Hand pending tasks to this session's bound executors (or just ``only``) that have room."""
        if not rec.pending or not rec.executors or rec.closing_at is not None:
            return
        executors = self.executors
        candidates = rec.executors if only is None else [e for e in only if e in rec.executors]
        bound = [ex for e in candidates if (ex := executors[e]).executor.state == _BOUND]
        if not bound:
            return
        # Beyond one task each, keep enough of the backlog for the executors still binding,
        # so that they too get work when they come up.
        binding = sum(1 for e in rec.executors if executors[e].executor.state != _BOUND)
        window = self.window(rec)
        started: list[Task] = []
        for ex in bound:
            # Up to the window; an idle executor gets one task whatever, beyond that only what
            # leaves one pending task for each executor still binding.
            pending = len(rec.pending)
            if ex.inflight:
                count = min(window - len(ex.inflight), pending - binding)
            else:
                count = max(1, min(window, pending - binding))
            if count > 0:
                batch = self._start(rec, ex, count)
                link = self.nodes[ex.executor.node].link
                if link is not None:
                    self.out.append(fx.RunOnNode(link, ex.id, batch))
                started += batch
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

    def task_done(self, rec: SessionRecord, ex: ExecutorRecord, sent: float, now: float, at: int) -> None:
        """Account for a task an executor finished (``now``: time.monotonic(), ``at``: now_ms()):
        its busy time feeds the session's average."""
        busy = now - max(sent, ex.last_done)
        ex.last_done = now
        rec.task_seconds = busy if rec.task_seconds is None else 0.8 * rec.task_seconds + 0.2 * busy
        if not ex.inflight:
            ex.idle_since = at

    def succeed(self, rec: SessionRecord, task: Task, output: bytes | None, at: int, event: Event) -> None:
        """Running -> Succeed, the hot path's finish: what finish_task does, without its checks.

        ``event`` is the Succeed event at ``at``; one (frozen) event serves a whole message of them."""
        session = rec.session
        task.state = TaskState.SUCCEED
        session.running -= 1
        session.succeed += 1
        task.events.append(event)
        task.output = output
        task.completion_time = at

    def _start(self, rec: SessionRecord, ex: ExecutorRecord, count: int) -> list[Task]:
        """Pending -> Running for the next ``count`` pending tasks, all on ``ex``."""
        tasks, pending, inflight = rec.tasks, rec.pending, ex.inflight
        event = Event(_RUNNING_CODE, f"running on executor {ex.id}", now_ms())  # frozen: one serves them all
        sent = time.monotonic()
        started = []
        for _ in range(count):
            task = tasks[pending.popleft()]
            task.state = TaskState.RUNNING
            task.events.append(event)
            task.attempts += 1
            inflight[task.id] = sent
            started.append(task)
        session = rec.session
        session.pending -= count
        session.running += count
        return started

    def kick(self) -> None:
        """Ask the scheduler loop for a cycle now instead of at its next interval."""
        self.out.append(fx.Kick())
