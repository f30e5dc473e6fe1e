"""One executor of this node: a mailbox of commands that one worker coroutine handles in order.

Commands arrive from the session manager (bind, run, unbind, release) and are handled strictly in
the order they arrived, so an unbind or release waits for the tasks queued before it. Every state
the executor reaches and every task it finishes goes to the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeAlias

from flame.executor_manager._outbox import Outbox
from flame.executor_manager._settings import AgentSettings
from flame.executor_manager.installers import prepare_application
from flame.executor_manager.shims import HostService, ServiceLost, ShimError, describe_exit
from flame.protocol import application_spec_from_pb, backend_pb2, shim_pb2, types_pb2, wire_enum
from flame.types import ApplicationSpec, ExecutorState, ResourceRequirement

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "the executor manager is shutting down"
# An outcome is sent at once (not held for a batch) when its executor has this many tasks queued or
# fewer: the session manager refills an executor when it hears of an outcome, and the refill must
# arrive before the executor runs dry.
LOW_WATER = 1


@dataclass(frozen=True)
class Unbind:
    pass


@dataclass(frozen=True)
class Release:
    pass


Command: TypeAlias = "backend_pb2.BindExecutor | backend_pb2.RunTask | Unbind | Release"
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Executor:
    def __init__(
        self,
        executor_id: str,
        resreq: ResourceRequirement,
        *,
        settings: AgentSettings,
        outbox: Outbox,
        spawn: Spawn,
    ) -> None:
        self.id = executor_id
        self.resreq = resreq
        self.state = ExecutorState.IDLE
        self.session_id: str | None = None
        self.release_requested = False
        self._settings = settings
        self._outbox = outbox
        self._spawn = spawn
        self._mailbox: deque[Command] = deque()
        self._queued_runs = 0
        self._wake = asyncio.Event()
        self._service: HostService | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._current: shim_pb2.TaskContext | None = None
        self._task_timeout: float | None = None  # seconds, from the binding
        self._log_file = str(settings.log_dir / f"{executor_id}.log")

    # ---- called by the agent ----

    def post(self, command: Command) -> None:
        if isinstance(command, (Unbind, Release)):
            # Tasks queued behind the running one go back unstarted rather than delay the unbind.
            self._fail_queued("its executor was unbound before it started", until_bind=True, not_started=True)
        if isinstance(command, Release):
            self.release_requested = True
        elif isinstance(command, backend_pb2.RunTask):
            self._queued_runs += 1
        self._mailbox.append(command)
        self._wake.set()

    def snapshot(self) -> backend_pb2.ExecutorReport:
        """This executor's state as the session manager should know it (for registration)."""
        bound = self.state in (ExecutorState.BINDING, ExecutorState.BOUND, ExecutorState.UNBINDING)
        return backend_pb2.ExecutorReport(
            executor_id=self.id,
            state=wire_enum(self.state),
            session_id=self.session_id if bound else None,
            log_file=self._log_file if bound else None,
        )

    async def run(self) -> None:
        """Handle commands until released; on cancellation, stop the service and report Released."""
        try:
            while True:
                command = await self._next()
                if command is None:
                    await self._service_lost(self._exit_reason())
                elif isinstance(command, backend_pb2.RunTask):
                    await self._run_task(command.task)
                elif isinstance(command, backend_pb2.BindExecutor):
                    await self._bind(command)
                elif isinstance(command, Unbind):
                    await self._unbind()
                else:
                    await self._release()
                    return
        except asyncio.CancelledError:
            await self._close(SHUTTING_DOWN)
            raise

    # ---- commands ----

    async def _next(self) -> Command | None:
        """The next command; None when the bound service exited while there was nothing to do."""
        while not self._mailbox:
            if self._service is not None and self._service.returncode is not None:
                return None
            self._wake.clear()
            await self._wake.wait()
        command = self._mailbox.popleft()
        if isinstance(command, backend_pb2.RunTask):
            self._queued_runs -= 1
        return command

    async def _bind(self, command: backend_pb2.BindExecutor) -> None:
        session_id = command.session_id
        if self.state == ExecutorState.BOUND:
            if self.session_id == session_id:
                self._report(ExecutorState.BOUND, session_id=session_id, log_file=True)
                return
            logger.warning("executor %s is bound to session %s: unbinding it first", self.id, self.session_id)
            await self._unbind()
        spec = application_spec_from_pb(command.application)
        self._task_timeout = command.task_timeout_ms / 1000 if command.HasField("task_timeout_ms") else None
        self.state, self.session_id = ExecutorState.BINDING, session_id
        self._report(ExecutorState.BINDING, session_id=session_id)
        try:
            spec = await prepare_application(self._settings, command.application_name, spec, self.id)
            self._service = await HostService.start(
                self._settings,
                executor_id=self.id,
                session_id=session_id,
                application=command.application_name,
                spec=spec,
            )
            await self._service.enter(_session_context(command, spec))
        except ShimError as exc:
            reason = exc.message
            if self._service is not None and not isinstance(exc, ServiceLost):
                reason = self._service.with_log(reason)
            await self._stop_service()
            self.state, self.session_id = ExecutorState.IDLE, None
            has_log = os.path.exists(self._log_file)
            self._report(ExecutorState.IDLE, session_id=session_id, message=reason, log_file=has_log)
            logger.warning("executor %s failed to bind session %s: %s", self.id, session_id, _first_line(reason))
            return
        self.state = ExecutorState.BOUND
        self._report(ExecutorState.BOUND, session_id=session_id, log_file=True)
        self._watcher = self._spawn(self._watch(self._service))
        logger.info(
            "executor %s bound to session %s (application %s, pid %d)",
            self.id,
            session_id,
            command.application_name,
            self._service.pid,
        )

    async def _run_task(self, task: shim_pb2.TaskContext) -> None:
        service = self._service
        if self.state != ExecutorState.BOUND or service is None or task.session_id != self.session_id:
            message = f"executor {self.id} is not bound to session {task.session_id}"
            self._outcome(task, retryable=True, message=message)
            return
        self._current = task  # stays set if the call is cancelled, for _close to fail it
        try:
            result = await service.invoke(task, self._task_timeout)
        except ServiceLost as exc:
            self._current = None
            self._outcome(task, retryable=True, message=exc.message)
            await self._service_lost(exc.message)
            return
        except ShimError as exc:
            self._current = None
            self._outcome(task, message=exc.message)
            return
        self._current = None
        urgent = self._queued_runs <= LOW_WATER
        if result.return_code == 0:
            self._outcome(task, output=result.output if result.HasField("output") else None, urgent=urgent)
        else:
            message = result.message or f"the service returned code {result.return_code}"
            self._outcome(task, message=message, urgent=urgent)

    async def _unbind(self) -> None:
        if self._service is None:
            self._report(ExecutorState.IDLE)
            return
        session_id = self.session_id
        self.state = ExecutorState.UNBINDING
        try:
            await self._service.leave(self._settings.leave_timeout)
        except ShimError as exc:
            logger.warning("executor %s: OnSessionLeave failed: %s", self.id, _first_line(exc.message))
        await self._stop_service()
        self.state, self.session_id = ExecutorState.IDLE, None
        self._report(ExecutorState.IDLE, log_file=True)
        logger.info("executor %s unbound from session %s", self.id, session_id)

    async def _release(self) -> None:
        if self._service is not None:
            await self._unbind()
        self._fail_queued(f"executor {self.id} was released", until_bind=False)
        self.state = ExecutorState.RELEASED
        self._report(ExecutorState.RELEASED)
        logger.info("executor %s released", self.id)

    # ---- failures ----

    async def _service_lost(self, reason: str) -> None:
        """The service died or hung up: fail what was queued for it and go back to Idle."""
        session_id = self.session_id
        self._fail_queued(reason, until_bind=True)
        await self._stop_service()
        self.state, self.session_id = ExecutorState.IDLE, None
        self._report(ExecutorState.IDLE, message=reason, log_file=True)
        logger.warning("executor %s lost its service (session %s): %s", self.id, session_id, _first_line(reason))

    async def _close(self, reason: str) -> None:
        """Shutdown: fail the running and queued tasks (retryable), stop the service, report Released."""
        interrupted = self._current
        if interrupted is not None:
            self._outcome(interrupted, retryable=True, message=reason)
        self._fail_queued(reason, until_bind=False)
        if self._service is not None and interrupted is None and self.state == ExecutorState.BOUND:
            try:
                await self._service.leave(min(self._settings.leave_timeout, self._settings.stop_grace))
            except ShimError as exc:
                logger.warning("executor %s: OnSessionLeave failed: %s", self.id, _first_line(exc.message))
        await self._stop_service()
        self.state, self.session_id = ExecutorState.RELEASED, None
        self._report(ExecutorState.RELEASED, message=reason)
        logger.info("executor %s released: %s", self.id, reason)

    def _fail_queued(self, reason: str, *, until_bind: bool, not_started: bool = False) -> None:
        """Fail the queued tasks (retryable); with ``until_bind``, only those queued before the next bind."""
        kept: deque[Command] = deque()
        for index, command in enumerate(self._mailbox):
            if until_bind and isinstance(command, backend_pb2.BindExecutor):
                kept.extend(list(self._mailbox)[index:])
                break
            if isinstance(command, backend_pb2.RunTask):
                self._outcome(command.task, retryable=True, message=reason, not_started=not_started)
            else:
                kept.append(command)
        self._mailbox = kept
        self._queued_runs = sum(isinstance(command, backend_pb2.RunTask) for command in kept)

    def _exit_reason(self) -> str:
        service = self._service
        assert service is not None and service.returncode is not None
        return service.with_log(f"service {describe_exit(service.returncode)} while bound")

    async def _stop_service(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        service, self._service = self._service, None
        if service is not None:
            await service.stop()

    async def _watch(self, service: HostService) -> None:
        await service.wait()
        self._wake.set()

    # ---- outgoing ----

    def _report(
        self,
        state: ExecutorState,
        *,
        session_id: str | None = None,
        message: str | None = None,
        log_file: bool = False,
    ) -> None:
        self._outbox.put(
            backend_pb2.ExecutorReport(
                executor_id=self.id,
                state=wire_enum(state),
                session_id=session_id,
                message=message,
                log_file=self._log_file if log_file else None,
            )
        )

    def _outcome(
        self,
        task: shim_pb2.TaskContext,
        *,
        output: bytes | None = None,
        message: str | None = None,
        retryable: bool = False,
        not_started: bool = False,
        urgent: bool = True,
    ) -> None:
        failed = message is not None
        self._outbox.put(
            backend_pb2.TaskOutcome(
                executor_id=self.id,
                session_id=task.session_id,
                task_id=task.task_id,
                state=types_pb2.Failed if failed else types_pb2.Succeed,
                output=output,
                message=message,
                retryable=retryable,
                not_started=not_started,
            ),
            urgent=urgent,
        )


def _session_context(command: backend_pb2.BindExecutor, spec: ApplicationSpec) -> shim_pb2.SessionContext:
    application = shim_pb2.ApplicationContext(
        name=command.application_name,
        shim=wire_enum(spec.shim),
        image=spec.image,
        command=spec.command,
        working_directory=spec.working_directory,
        url=spec.url,
        installer=spec.installer,
    )
    return shim_pb2.SessionContext(
        session_id=command.session_id,
        application=application,
        common_data=command.common_data if command.HasField("common_data") else None,
    )


def _first_line(text: str) -> str:
    return text.partition("\n")[0]
