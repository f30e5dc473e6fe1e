"""The session manager's effect runner: the one place its core's effects meet the world.

The Frontend and Backend servicers, the scheduler loop and the providers call the Controller;
it turns each call into an event for the core (flame.session_manager.core), then performs the
effects the core returns, in order: records go to storage (group commit; the event a commit
carries goes back to the core once it commits, or its undo once it fails), commands go down the
nodes' links, watchers hear of task changes (only ever from a commit's ``then``). One Controller
per session manager, used from one event loop; it knows nothing of gRPC.

Requests that change what is durable before memory (applications, sessions) run one at a time:
each is checked, committed, then applied, so two of them never decide on the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any, cast

from flame.errors import FlameError, Internal, NotFound
from flame.session_manager import effects as fx
from flame.session_manager.core import ControllerSettings, Core, check_name
from flame.session_manager.links import NodeLink
from flame.session_manager.records import ExecutorRecord, NodeRecord, SessionRecord
from flame.session_manager.storage import Storage
from flame.types import Application, ApplicationSpec, Session, SessionSpec, Task, TaskState

logger = logging.getLogger(__name__)

# Most tasks one WatchSession message carries.
WATCH_BATCH = 1_000
FINAL_STATES = (TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED)

# A watcher's queue receives tasks as they change; None ends the watch.
TaskQueue = asyncio.Queue["Task | None"]
Ack = asyncio.Future["BaseException | None"]
_FINAL = frozenset(FINAL_STATES)


class SessionWatch:
    """The finished tasks one WatchSession has yet to send: added and taken in whole batches.

    Every finished task of the session passes through here, so it costs a list extend per
    commit and a slice per message, where a queue would cost a put and a get per task.
    """

    __slots__ = ("_ready", "ended", "tasks")

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.ended = False  # no more tasks will come: send what is left, then stop
        self._ready = asyncio.Event()

    def add(self, tasks: list[Task]) -> None:
        self.tasks.extend(tasks)
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def take(self, limit: int) -> list[Task] | None:
        """Up to ``limit`` tasks, in the order they finished, once there are some; None at the end."""
        while not self.tasks:
            if self.ended:
                return None
            self._ready.clear()
            await self._ready.wait()
        if len(self.tasks) <= limit:
            batch, self.tasks = self.tasks, []
        else:
            batch, self.tasks = self.tasks[:limit], self.tasks[limit:]
        return batch


class Controller:
    """Applications, sessions, tasks, executors and nodes: the core's state, and every operation on it."""

    def __init__(self, storage: Storage, settings: ControllerSettings) -> None:
        self.storage = storage
        self.settings = settings
        self.core = Core(settings)
        self._kick = asyncio.Event()
        self._serial = asyncio.Lock()  # requests that commit before they apply, one at a time
        self._session_watchers: dict[str, list[SessionWatch]] = {}
        self._task_watchers: dict[str, dict[str, list[TaskQueue]]] = {}
        # Called with a session's changed tasks once they are committed, before watchers hear of
        # them: finished tasks and tasks that went back to Pending (metrics and the dashboard).
        self.on_tasks_committed: list[Callable[[SessionRecord, list[Task]], None]] = []

    # ---- the core's state, read-only for callers ------------------------------------------

    @property
    def applications(self) -> dict[str, Application]:
        return self.core.applications

    @property
    def sessions(self) -> dict[str, SessionRecord]:
        return self.core.sessions

    @property
    def executors(self) -> dict[str, ExecutorRecord]:
        return self.core.executors

    @property
    def nodes(self) -> dict[str, NodeRecord]:
        return self.core.nodes

    def get_application(self, name: str) -> Application:
        return self.core.get_application(name)

    def get_session_record(self, session_id: str) -> SessionRecord:
        return self.core.get_session_record(session_id)

    # ---- running events -------------------------------------------------------------------

    def handle(self, event: fx.Event) -> object:
        """Hand the core an event and perform its effects; return the core's answer (nothing waits)."""
        effects = self.core.handle(event)
        self._perform(effects)
        return effects.value

    async def _request(self, event: fx.Event) -> Any:
        """An event whose caller waits for the commit it asks for (and gets that commit's error)."""
        effects = self.core.handle(event)
        ack = self._perform(effects)
        if ack is not None:
            error = await ack
            if error is not None:
                raise error
        return effects.value

    async def _serial_request(self, event: fx.Event) -> Any:
        async with self._serial:
            return await self._request(event)

    def _perform(self, effects: fx.Effects) -> Ack | None:
        """Carry out ``effects`` in order; return the future of the commit a caller waits for."""
        ack: Ack | None = None
        for effect in effects:
            kind = type(effect)
            if kind is fx.Commit:
                commit = cast(fx.Commit, effect)
                future: Ack | None = None
                if commit.ack:
                    future = ack = asyncio.get_running_loop().create_future()
                if commit.then is None and commit.undo is None and future is None:
                    self.storage.write_nowait(*commit.records)
                else:
                    self.storage.write_nowait(*commit.records, on_commit=partial(self._committed, commit, future))
            elif kind is fx.RunOnNode:
                run = cast(fx.RunOnNode, effect)
                cast(NodeLink, run.link).run(run.executor_id, run.tasks)
            elif kind is fx.Notify:
                notify = cast(fx.Notify, effect)
                self._notify(notify.rec, notify.tasks)
            elif kind is fx.Kick:  # the scheduler loop runs a cycle now, not at its next interval
                self._kick.set()
            else:
                self._perform_rare(effect)
        return ack

    def _perform_rare(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.EndWatches):
            self._end_watches(effect.session_id)
        elif isinstance(effect, fx.BindOnNode):
            cast(NodeLink, effect.link).bind(effect.executor_id, effect.session, effect.app, effect.task_timeout)
        elif isinstance(effect, fx.CreateOnNode):
            cast(NodeLink, effect.link).create(effect.executor_id, effect.resreq)
        elif isinstance(effect, fx.UnbindOnNode):
            cast(NodeLink, effect.link).unbind(effect.executor_id)
        elif isinstance(effect, fx.ReleaseOnNode):
            cast(NodeLink, effect.link).release(effect.executor_id)
        elif isinstance(effect, fx.Registered):
            cast(NodeLink, effect.link).registered(effect.heartbeat_interval_ms)
        elif isinstance(effect, fx.CloseLink):
            cast(NodeLink, effect.link).close()
        else:  # pragma: no cover - every effect type is handled above
            raise AssertionError(f"unknown effect {effect!r}")

    def _committed(self, commit: fx.Commit, ack: Ack | None, error: BaseException | None) -> None:
        follow = commit.then if error is None else commit.undo
        if follow is not None:
            self._perform(self.core.handle(follow))
        if error is not None and ack is None and isinstance(commit.then, fx.TasksStored):
            # memory keeps the change; a restart finds the stored state and runs the task again
            logger.error(
                "session %s: %d task change(s) were not stored (%s); watchers not told",
                commit.then.session_id,
                len(commit.records),
                error,
            )
        if ack is not None and not ack.done():
            ack.set_result(error)

    # ---- start-up -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Load state from storage; tasks that were running go back to Pending.

        Only what open sessions still need stays in memory: their unfinished tasks. Finished
        tasks, and every task of a closed session, are read from storage when asked for.
        """
        stored = await self.storage.load(closed_tasks=False, finished_tasks=False)
        await self._request(fx.Recovered(stored))

    # ---- applications ---------------------------------------------------------------------

    async def register_application(self, name: str, spec: ApplicationSpec) -> Application:
        return cast(Application, await self._serial_request(fx.RegisterApplication(name, spec)))

    async def update_application(self, name: str, spec: ApplicationSpec) -> Application:
        await self._serial_request(fx.UpdateApplication(name, spec))
        return self.core.get_application(name)

    async def unregister_application(self, name: str) -> None:
        await self._serial_request(fx.UnregisterApplication(name))

    # ---- sessions -------------------------------------------------------------------------

    async def create_session(self, session_id: str, spec: SessionSpec) -> Session:
        return cast(Session, await self._serial_request(fx.CreateSession(session_id, spec)))

    async def open_session(self, session_id: str, spec: SessionSpec | None) -> Session:
        async with self._serial:
            session = self.core.check_open(session_id, spec)
            if session is not None:
                return session
            assert spec is not None  # check_open refuses a missing session without one
            return cast(Session, await self._request(fx.CreateSession(session_id, spec)))

    async def set_session_weight(self, session_id: str, weight: float) -> Session:
        return cast(Session, await self._serial_request(fx.SetSessionWeight(session_id, weight)))

    async def close_session(self, session_id: str) -> Session:
        """Close the session and cancel its pending tasks; nothing changes unless that commits."""
        return cast(Session, await self._serial_request(fx.CloseSession(session_id)))

    async def delete_session(self, session_id: str) -> Session:
        session = cast(Session, await self._serial_request(fx.DeleteSession(session_id)))
        self._session_watchers.pop(session_id, None)
        self._task_watchers.pop(session_id, None)
        return session

    def session_event(self, rec: SessionRecord, code: int, message: str) -> None:
        """Record an event on the session (stored, not waited for)."""
        self.handle(fx.SessionEvent(rec.id, code, message))

    # ---- tasks ----------------------------------------------------------------------------

    async def create_tasks(self, session_id: str, inputs: Iterable[bytes | None]) -> list[Task]:
        """Create tasks; they may be dispatched at once, and are acknowledged once their creation
        commits (a result reaches watchers only after its own, later commit). If the creation
        fails to commit, the tasks are forgotten again and the error is raised."""
        try:
            return cast(list[Task], await self._request(fx.CreateTasks(session_id, list(inputs))))
        except FlameError as exc:
            if exc.__class__ is not Internal:
                raise
            raise Internal(f"the new tasks of session {session_id!r} could not be stored: {exc}") from exc

    async def cancel_tasks(self, session_id: str, task_ids: Iterable[str]) -> list[Task]:
        """Cancel those of ``task_ids`` that are still Pending; return them."""
        return cast(list[Task], await self._request(fx.CancelTasks(session_id, list(task_ids))))

    async def get_task(self, session_id: str, task_id: str) -> Task:
        """An unfinished task from memory; a finished one (no longer in memory) from storage."""
        rec = self.core.get_session_record(session_id)
        task = rec.tasks.get(task_id) or await self.storage.get_task(session_id, task_id)
        if task is None:
            raise NotFound(f"task <{task_id}> not found in session <{session_id}>")
        return task

    async def list_tasks(self, session_id: str) -> list[Task]:
        """Every task of the session in id order: as stored, with the live copy of each unfinished one."""
        rec = self.core.get_session_record(session_id)
        stored = await self.storage.list_tasks(session_id)
        return [rec.tasks.get(task.id, task) for task in stored]

    # ---- watchers -------------------------------------------------------------------------

    def watcher_count(self, session_id: str) -> int:
        """How many WatchSession streams follow the session."""
        return len(self._session_watchers.get(session_id, ()))

    async def watch_task(self, session_id: str, task_id: str) -> AsyncIterator[Task]:
        """The task now, then after each change; ends after a final state."""
        self.core.get_session_record(session_id)
        task = await self.get_task(session_id, task_id)
        if task.state.is_final:
            yield task
            return
        queue: TaskQueue = asyncio.Queue()
        watchers = self._task_watchers.setdefault(session_id, {})
        watchers.setdefault(task_id, []).append(queue)
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
            queues = watchers.get(task_id)
            if queues is not None and queue in queues:
                queues.remove(queue)
                if not queues:
                    del watchers[task_id]

    def watch_session(self, session_id: str, include_completed: bool) -> AsyncIterator[list[Task]]:
        """Batches of tasks that reached a final state; ends when the session is finished.

        The watcher is registered before this returns (not at the first iteration).
        """
        rec = self.core.get_session_record(session_id)
        watch = SessionWatch()
        self._session_watchers.setdefault(session_id, []).append(watch)
        return self._session_batches(rec, watch, include_completed)

    async def _session_batches(
        self, rec: SessionRecord, watch: SessionWatch, include_completed: bool
    ) -> AsyncIterator[list[Task]]:
        try:
            if include_completed:  # the committed ones; any finishing meanwhile also come through the watch
                replay = await self.storage.list_tasks(rec.id, states=FINAL_STATES)
                for start in range(0, len(replay), WATCH_BATCH):
                    yield replay[start : start + WATCH_BATCH]
            if rec.finished and not watch.tasks and not watch.ended:
                return  # finished before the watch began: no end comes
            while (batch := await watch.take(WATCH_BATCH)) is not None:
                yield batch
        finally:
            watches = self._session_watchers.get(rec.id)
            if watches is not None and watch in watches:
                watches.remove(watch)
                if not watches:
                    del self._session_watchers[rec.id]

    def _notify(self, rec: SessionRecord, tasks: list[Task]) -> None:
        for hook in self.on_tasks_committed:
            hook(rec, tasks)
        task_watchers = self._task_watchers.get(rec.id)
        if task_watchers:
            for task in tasks:
                for queue in task_watchers.get(task.id, ()):
                    queue.put_nowait(task)
        session_watchers = self._session_watchers.get(rec.id)
        if session_watchers:
            finished = [task for task in tasks if task.state in _FINAL]
            if finished:
                for watch in session_watchers:
                    watch.add(finished)

    def _end_watches(self, session_id: str) -> None:
        for watch in self._session_watchers.get(session_id, ()):
            watch.end()
        for queues in self._task_watchers.get(session_id, {}).values():
            for queue in queues:
                queue.put_nowait(None)

    # ---- scheduling hooks -----------------------------------------------------------------

    async def wait_for_kick(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout)
        self._kick.clear()


__all__ = ["FINAL_STATES", "WATCH_BATCH", "Controller", "ControllerSettings", "check_name"]
