"""What the dashboard and the metrics read from the session manager, as plain views.

The one module that knows the controller's internals (its dicts of records, the scheduler's
decision): everything else in the dashboard works on the frozen views defined here. Reads are
O(what is shown) except where noted (a filtered task list scans its session's tasks).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flame.types import (
    Application,
    Event,
    Executor,
    ExecutorState,
    NodeState,
    ResourceRequirement,
    SessionState,
    Task,
    TaskState,
)

if TYPE_CHECKING:
    from flame.session_manager.controller import Controller
    from flame.session_manager.records import SessionRecord
    from flame.session_manager.scheduler import Decision

_RUNNING_ON = re.compile(r"running on executor (\S+)")
_LOG_FILES_KEPT = 10_000  # log files of executors since released, for their tasks' pages


@dataclass(frozen=True)
class Counts:
    pending: int = 0
    running: int = 0
    succeed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.succeed + self.failed + self.cancelled

    @property
    def done(self) -> int:
        return self.succeed + self.failed + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {
            "pending": self.pending,
            "running": self.running,
            "succeed": self.succeed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "total": self.total,
        }


@dataclass(frozen=True)
class SessionInfo:
    id: str
    application: str
    open: bool
    counts: Counts
    priority: int
    min_instances: int
    max_instances: int | None
    weight: float
    executors: int
    creation_time: int
    completion_time: int | None


@dataclass(frozen=True)
class Allocation:
    """What the scheduler owes a session and why it holds no more executors than it does."""

    executors: int
    share: float | None  # fair share in executors at the last scheduling cycle
    limit: int | None  # the smaller of the session's and its application's max_instances
    reason: str


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: str
    capacity: ResourceRequirement
    used: ResourceRequirement
    executors: int
    max_executors: int
    last_heartbeat_time: int


@dataclass(frozen=True)
class ExecutorInfo:
    id: str
    node: str
    state: str
    session_id: str | None
    application: str | None
    inflight: int
    creation_time: int
    log_file: str | None


@dataclass(frozen=True)
class TaskInfo:
    session_id: str
    id: str
    state: str
    attempts: int
    input_size: int | None
    output_size: int | None
    creation_time: int
    completion_time: int | None
    events: tuple[Event, ...]
    executor: str | None  # the executor that ran (or runs) its latest attempt

    @property
    def message(self) -> str | None:
        return self.events[-1].message if self.events else None


def state_name(state: TaskState | ExecutorState | NodeState | SessionState) -> str:
    """``NOT_READY`` -> ``NotReady``, as flmctl prints them."""
    return "".join(part.capitalize() for part in state.name.split("_"))


TASK_STATES = tuple(state_name(s) for s in TaskState)


def parse_task_state(text: str) -> TaskState | None:
    for state in TaskState:
        if state_name(state).lower() == text.lower():
            return state
    return None


class ClusterState:
    """Read-only views of one controller's state, plus the scheduler's latest decision."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self._decision: Decision | None = None
        self._log_files: OrderedDict[str, str] = OrderedDict()

    # ---- hooks ------------------------------------------------------------------------------

    def on_tasks_committed(self, callback: Callable[[str, str, list[Task]], None]) -> None:
        """Call ``callback(application, session_id, tasks)`` with tasks whose change was committed."""

        def hook(rec: SessionRecord, tasks: list[Task]) -> None:
            callback(rec.session.spec.application, rec.session.id, tasks)

        self._controller.on_tasks_committed.append(hook)

    def scheduled(self, decision: Decision) -> None:
        """Keep the scheduler's latest decision (shares and unplaceable sessions)."""
        self._decision = decision

    # ---- sessions ---------------------------------------------------------------------------

    def session_ids(self) -> list[str]:
        return list(self._controller.sessions)

    def sessions(self, open_only: bool = False) -> list[SessionInfo]:
        records = self._controller.sessions.values()
        return [_session_info(r) for r in records if not open_only or r.session.state == SessionState.OPEN]

    def session(self, session_id: str) -> SessionInfo | None:
        rec = self._controller.sessions.get(session_id)
        return None if rec is None else _session_info(rec)

    def created_counts(self) -> Iterator[tuple[str, str, int]]:
        """(session id, application, tasks created so far) for every session."""
        for rec in self._controller.sessions.values():
            yield rec.session.id, rec.session.spec.application, rec.session.next_task_id - 1

    def session_events(self, session_id: str) -> list[Event]:
        rec = self._controller.sessions.get(session_id)
        return [] if rec is None else list(rec.session.events)

    def allocation(self, session_id: str) -> Allocation | None:
        controller = self._controller
        rec = controller.sessions.get(session_id)
        if rec is None:
            return None
        session = rec.session
        app = controller.applications.get(session.spec.application)
        limits = [m for m in (session.spec.max_instances, app.spec.max_instances if app else None) if m]
        limit = min(limits) if limits else None
        held = len(rec.executors)
        decision = self._decision
        share = decision.entitlements.get(session_id) if decision else None
        unplaceable = decision.unplaceable.get(session_id) if decision else None
        if session.state != SessionState.OPEN:
            reason = "the session is closed"
        elif rec.gave_up:
            reason = "binding failed too often; the scheduler gave up on this session"
        elif unplaceable:
            reason = unplaceable
        elif not rec.pending and held >= session.running:
            reason = "no backlog: every task it has is already on an executor"
        elif limit is not None and held >= limit:
            reason = f"it holds its max_instances ({limit})"
        elif share is not None and held >= share:
            reason = f"it holds its fair share of the cluster ({share:.1f} executors)"
        elif controller.settings.max_executors is not None and len(controller.executors) >= (
            controller.settings.max_executors
        ):
            reason = f"the cluster's max_executors ({controller.settings.max_executors}) is reached"
        else:
            reason = "more executors are on their way (being created or bound)"
        return Allocation(held, share, limit, reason)

    # ---- tasks ------------------------------------------------------------------------------

    async def tasks(
        self, session_id: str, state: TaskState | None, offset: int, limit: int
    ) -> tuple[list[TaskInfo], int | None]:
        """One page of a session's tasks in id order and how many match (None: not counted).

        Finished tasks live in storage only, so the page is read from there; an unfinished task
        shows its live copy. A filter on Pending or Running filters the live tasks.
        """
        rec = self._controller.sessions.get(session_id)
        if rec is None:
            return [], 0
        if state in (TaskState.PENDING, TaskState.RUNNING):
            matching = [t for t in rec.tasks.values() if t.state == state]
            return [self._task_info(t) for t in matching[offset : offset + limit]], len(matching)
        states = None if state is None else [state]
        stored = await self._controller.storage.list_tasks(session_id, offset=offset, limit=limit, states=states)
        page = [self._task_info(rec.tasks.get(t.id, t)) for t in stored]
        s = rec.session
        counts = {
            TaskState.SUCCEED: s.succeed,
            TaskState.FAILED: s.failed,
            TaskState.CANCELLED: s.cancelled,
        }
        total = s.pending + s.running + s.succeed + s.failed + s.cancelled if state is None else counts[state]
        return page, total

    async def task(self, session_id: str, task_id: str) -> TaskInfo | None:
        rec = self._controller.sessions.get(session_id)
        if rec is None:
            return None
        task = rec.tasks.get(task_id) or await self._controller.storage.get_task(session_id, task_id)
        return None if task is None else self._task_info(task)

    def _task_info(self, task: Task) -> TaskInfo:
        executor = None
        for event in reversed(task.events):
            match = _RUNNING_ON.match(event.message or "")
            if match:
                executor = match.group(1)
                break
        return TaskInfo(
            session_id=task.session_id,
            id=task.id,
            state=state_name(task.state),
            attempts=task.attempts,
            input_size=None if task.input is None else len(task.input),
            output_size=None if task.output is None else len(task.output),
            creation_time=task.creation_time,
            completion_time=task.completion_time,
            events=tuple(task.events),
            executor=executor,
        )

    # ---- applications, executors, nodes -----------------------------------------------------

    def applications(self) -> list[Application]:
        return list(self._controller.applications.values())

    def application(self, name: str) -> Application | None:
        return self._controller.applications.get(name)

    def executors(self) -> list[ExecutorInfo]:
        infos = [_executor_info(r.executor, len(r.inflight)) for r in self._controller.executors.values()]
        for info in infos:
            if info.log_file is not None and info.id not in self._log_files:
                self._log_files[info.id] = info.log_file
                while len(self._log_files) > _LOG_FILES_KEPT:
                    self._log_files.popitem(last=False)
        return infos

    def executor(self, executor_id: str) -> ExecutorInfo | None:
        rec = self._controller.executors.get(executor_id)
        return None if rec is None else _executor_info(rec.executor, len(rec.inflight))

    def log_file(self, executor_id: str) -> str | None:
        """An executor's log file, also for one released since the dashboard last saw it."""
        rec = self._controller.executors.get(executor_id)
        if rec is not None and rec.executor.log_file:
            return rec.executor.log_file
        return self._log_files.get(executor_id)

    def executor_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((state_name(s) for s in ExecutorState if s != ExecutorState.UNKNOWN), 0)
        for rec in self._controller.executors.values():
            name = state_name(rec.executor.state)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def nodes(self) -> list[NodeInfo]:
        controller = self._controller
        infos = []
        for rec in controller.nodes.values():
            used = ResourceRequirement()
            for executor_id in rec.executors:
                ex = controller.executors.get(executor_id)
                if ex is not None:
                    used = used + ex.executor.resreq
            node = rec.node
            infos.append(
                NodeInfo(
                    name=node.name,
                    state=state_name(node.state),
                    capacity=node.capacity,
                    used=used,
                    executors=len(rec.executors),
                    max_executors=node.max_executors,
                    last_heartbeat_time=node.last_heartbeat_time,
                )
            )
        return infos

    def node(self, name: str) -> NodeInfo | None:
        return next((n for n in self.nodes() if n.name == name), None)


def _session_info(rec: SessionRecord) -> SessionInfo:
    s = rec.session
    return SessionInfo(
        id=s.id,
        application=s.spec.application,
        open=s.state == SessionState.OPEN,
        counts=Counts(s.pending, s.running, s.succeed, s.failed, s.cancelled),
        priority=s.spec.priority,
        min_instances=s.spec.min_instances,
        max_instances=s.spec.max_instances,
        weight=s.spec.weight,
        executors=len(rec.executors),
        creation_time=s.creation_time,
        completion_time=s.completion_time,
    )


def _executor_info(executor: Executor, inflight: int) -> ExecutorInfo:
    return ExecutorInfo(
        id=executor.id,
        node=executor.node,
        state=state_name(executor.state),
        session_id=executor.session_id,
        application=executor.application,
        inflight=inflight,
        creation_time=executor.creation_time,
        log_file=executor.log_file,
    )
