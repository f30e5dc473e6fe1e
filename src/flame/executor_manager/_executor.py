"""One executor of this node: a mailbox of commands that one worker coroutine handles in order.

Commands arrive from the session manager (bind, run, unbind, release) and are handled strictly in
the order they arrived, so an unbind or release waits for the tasks queued before it. Every state
the executor reaches and every task it finishes goes to the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from flame.errors import InvalidState
from flame.executor_manager._metrics import AgentMetrics
from flame.executor_manager._outbox import Outbox
from flame.executor_manager._settings import AgentSettings
from flame.executor_manager.installers import prepare_application
from flame.executor_manager.shims import HostService, ServiceLost, ShimError, TaskStream, WarmPool, describe_exit
from flame.protocol import application_spec_from_pb, backend_pb2, ext_pb2, shim_pb2, types_pb2, wire_enum
from flame.types import ApplicationSpec, ExecutorState, ResourceRequirement

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "the executor manager is shutting down"
# An outcome is sent at once (not held for a batch) when its executor has this many tasks queued or
# fewer: the session manager refills an executor when it hears of an outcome, and the refill must
# arrive before the executor runs dry.
LOW_WATER = 1

_X = ExecutorState
# The executor's lifecycle on its node; anything else is a bug and raises.
TRANSITIONS: frozenset[tuple[ExecutorState, ExecutorState]] = frozenset(
    {
        (_X.IDLE, _X.BINDING),
        (_X.BINDING, _X.BOUND),
        (_X.BINDING, _X.IDLE),  # bind failed
        (_X.BOUND, _X.UNBINDING),
        (_X.BOUND, _X.IDLE),  # the service was lost
        (_X.UNBINDING, _X.IDLE),
        (_X.IDLE, _X.RELEASED),
        (_X.BINDING, _X.RELEASED),  # shutdown
        (_X.BOUND, _X.RELEASED),
        (_X.UNBINDING, _X.RELEASED),
    }
)


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
        metrics: AgentMetrics | None = None,
        warm: WarmPool | None = None,
    ) -> None:
        self.id = executor_id
        self.resreq = resreq
        self.state = ExecutorState.IDLE
        self.session_id: str | None = None
        self.release_requested = False
        self._settings = settings
        self._outbox = outbox
        self._spawn = spawn
        self._metrics = metrics
        self._warm = warm
        self._mailbox: deque[Command] = deque()
        self._queued_runs = 0
        self._wake = asyncio.Event()
        self._service: HostService | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._current: shim_pb2.TaskContext | None = None  # the unary call in progress
        # The streamed path (services of our SDK): tasks sent to the service and not answered
        # yet, in the order sent (the service runs them in that order: the first is running).
        self._stream: TaskStream | None = None
        self._reader: asyncio.Task[None] | None = None
        self._in_service: dict[str, shim_pb2.TaskContext] = {}
        self._stream_error: str | None = None  # set once the stream broke or a task timed out
        self._timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0  # time.perf_counter() when the service began the first unanswered task
        self._task_timeout: float | None = None  # seconds, from the binding
        self._bind_abandoned = asyncio.Event()  # an unbind or release arrived while binding
        self._log_file = str(settings.log_dir / f"{executor_id}.log")

    # ---- called by the agent ----

    def post(self, command: Command) -> None:
        if isinstance(command, (Unbind, Release)):
            # Tasks queued behind the running one go back unstarted rather than delay the unbind.
            self._fail_queued("its executor was unbound before it started", until_bind=True, not_started=True)
            if self.state == ExecutorState.BINDING:
                self._bind_abandoned.set()  # never finish binding a session that was unbound meanwhile
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
                if self._lost():
                    await self._service_lost(self._lost_reason())
                command = await self._next()
                if command is None:
                    continue  # the service was lost while there was nothing to do
                if isinstance(command, backend_pb2.RunTask):
                    if self._stream is not None:
                        await self._send_runs(command)
                    else:
                        await self._run_task(command.task)
                    continue
                await self._settle()
                if isinstance(command, backend_pb2.BindExecutor):
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
        """The next command; None when the bound service was lost while there was nothing to do."""
        while not self._mailbox:
            if self._lost():
                return None
            self._wake.clear()
            await self._wake.wait()
        command = self._mailbox.popleft()
        if isinstance(command, backend_pb2.RunTask):
            self._queued_runs -= 1
        return command

    def _lost(self) -> bool:
        service = self._service
        return service is not None and (service.returncode is not None or self._stream_error is not None)

    def _lost_reason(self) -> str:
        return self._stream_error if self._stream_error is not None else self._exit_reason()

    def _move(self, new: ExecutorState) -> None:
        if new != self.state and (self.state, new) not in TRANSITIONS:
            raise InvalidState(f"executor {self.id} cannot go from {self.state.name} to {new.name}")
        self.state = new

    async def _settle(self) -> None:
        """Wait until the service answered every task sent to it (or was lost)."""
        while self._in_service and not self._lost():
            self._wake.clear()
            await self._wake.wait()
        if self._lost():
            await self._service_lost(self._lost_reason())

    async def _bind(self, command: backend_pb2.BindExecutor) -> None:
        session_id = command.session_id
        if self.state == ExecutorState.BOUND:
            if self.session_id == session_id:
                self._report(ExecutorState.BOUND, session_id=session_id, log_file=True)
                return
            logger.warning("executor %s is bound to session %s: unbinding it first", self.id, self.session_id)
            await self._unbind()
        if self._mailbox and isinstance(self._mailbox[0], (Unbind, Release)):
            logger.info("executor %s: not binding session %s, unbound before the bind began", self.id, session_id)
            return  # still Idle: the unbind that follows says so
        spec = application_spec_from_pb(command.application)
        self._task_timeout = command.task_timeout_ms / 1000 if command.HasField("task_timeout_ms") else None
        self._move(ExecutorState.BINDING)
        self.session_id = session_id
        self._bind_abandoned.clear()
        self._report(ExecutorState.BINDING, session_id=session_id)
        starting = asyncio.ensure_future(self._start_and_enter(command, spec))
        abandoned = asyncio.ensure_future(self._bind_abandoned.wait())
        try:
            await asyncio.wait({starting, abandoned}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandoned.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.wait({starting})
        try:
            if starting.cancelled():
                raise asyncio.CancelledError
            starting.result()
        except asyncio.CancelledError:
            await self._stop_service()
            self._move(ExecutorState.IDLE)
            self.session_id = None
            self._report(ExecutorState.IDLE)
            logger.info("executor %s: bind of session %s abandoned: it was unbound while binding", self.id, session_id)
            return
        except ShimError as exc:
            reason = exc.message
            if self._service is not None and not isinstance(exc, ServiceLost):
                reason = self._service.with_log(reason)
            await self._stop_service()
            self._move(ExecutorState.IDLE)
            self.session_id = None
            has_log = os.path.exists(self._log_file)
            self._report(ExecutorState.IDLE, session_id=session_id, message=reason, log_file=has_log)
            logger.warning("executor %s failed to bind session %s: %s", self.id, session_id, _first_line(reason))
            if self._metrics is not None:
                self._metrics.bind_failed(command.application_name)
            return
        service = self._service
        assert service is not None  # set by _start_and_enter, which succeeded
        self._move(ExecutorState.BOUND)
        if self._metrics is not None:
            self._metrics.started(command.application_name)
        self._report(ExecutorState.BOUND, session_id=session_id, log_file=True)
        self._watcher = self._spawn(self._watch(service))
        if self._stream is not None:
            self._reader = self._spawn(self._read_results(service, self._stream))
        logger.info(
            "executor %s bound to session %s (application %s, pid %d%s, %s)",
            self.id,
            session_id,
            command.application_name,
            service.pid,
            ", warm start" if service.warm_started else "",
            "streamed invoke" if self._stream is not None else "OnTaskInvoke",
        )

    async def _run_task(self, task: shim_pb2.TaskContext) -> None:
        service = self._service
        if self.state != ExecutorState.BOUND or service is None or task.session_id != self.session_id:
            message = f"executor {self.id} is not bound to session {task.session_id}"
            self._outcome(task, retryable=True, message=message)
            return
        self._current = task  # stays set if the call is cancelled, for _close to fail it
        started = time.perf_counter()
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
        if self._metrics is not None:
            self._metrics.invoked(time.perf_counter() - started, "succeed" if result.return_code == 0 else "failed")
        urgent = self._queued_runs <= LOW_WATER
        if result.return_code == 0:
            self._outcome(task, output=result.output if result.HasField("output") else None, urgent=urgent)
        else:
            message = result.message or f"the service returned code {result.return_code}"
            self._outcome(task, message=message, urgent=urgent)

    async def _start_and_enter(self, command: backend_pb2.BindExecutor, spec: ApplicationSpec) -> None:
        spec = await prepare_application(self._settings, command.application_name, spec, self.id)
        self._service = await HostService.start(
            self._settings,
            executor_id=self.id,
            session_id=command.session_id,
            application=command.application_name,
            spec=spec,
            warm=self._warm,
        )
        await self._service.enter(_session_context(command, spec))
        self._stream = await self._service.open_stream()

    async def _send_runs(self, first: backend_pb2.RunTask) -> None:
        """Send ``first`` and every RunTask queued right behind it to the service in one batch."""
        runs = [first]
        while self._mailbox and isinstance(self._mailbox[0], backend_pb2.RunTask):
            runs.append(self._mailbox.popleft())  # type: ignore[arg-type]
            self._queued_runs -= 1
        tasks = []
        for run in runs:
            if self.state != ExecutorState.BOUND or run.task.session_id != self.session_id:
                message = f"executor {self.id} is not bound to session {run.task.session_id}"
                self._outcome(run.task, retryable=True, message=message)
            else:
                tasks.append(run.task)
        stream = self._stream
        if not tasks or stream is None or self._lost():
            for task in tasks:
                self._in_service[task.task_id] = task  # failed by _service_lost, the first as running
            return
        start_clock = not self._in_service
        for task in tasks:
            self._in_service[task.task_id] = task
        if start_clock:
            self._head_since = time.perf_counter()
            self._restart_timer()
        try:
            await stream.send(tasks)
        except (grpc.RpcError, grpc.aio.UsageError) as exc:
            self._set_stream_error(f"cannot send tasks to the service: {exc}")

    async def _read_results(self, service: HostService, stream: TaskStream) -> None:
        """Turn the service's result batches into outcomes until the stream ends."""
        try:
            async for batch in stream.results():
                if self._stream is not stream:
                    return
                self._take_results(batch.results)
            reason = service.with_log("the service ended its task stream")
        except grpc.RpcError as exc:
            reason = (await service.failure("a task", exc)).message
            if not self._in_service and service.returncode is not None:  # it exited between tasks
                reason = _exit_reason(service)
        except Exception as exc:  # never let a bad message take the node's task group down
            logger.exception("executor %s: reading task results failed", self.id)
            reason = f"reading the service's results failed: {exc!r}"
        if self._stream is stream:  # not a reader whose cancellation was lost (wait_for in 3.11 can)
            self._set_stream_error(reason)

    def _take_results(self, results: Iterable[ext_pb2.InvokeResult]) -> None:
        in_service, metrics = self._in_service, self._metrics
        outcomes = []
        for result in results:
            if metrics is not None:  # a task's time: since the one before it finished (or it was sent)
                now = time.perf_counter()
                metrics.invoked(now - self._head_since, "succeed" if result.return_code == 0 else "failed")
                self._head_since = now
            task = in_service.pop(result.task_id, None)
            if task is None:
                logger.warning(
                    "executor %s: the service answered task %s, which it was not given", self.id, result.task_id
                )
                continue
            # Built here rather than by _outcome: its keywords cost more than the outcome, per task.
            succeeded = result.return_code == 0
            outcome = backend_pb2.TaskOutcome(
                executor_id=self.id,
                session_id=task.session_id,
                task_id=task.task_id,
                state=types_pb2.Succeed if succeeded else types_pb2.Failed,
            )
            if not succeeded:
                outcome.message = result.message or f"the service returned code {result.return_code}"
            elif result.HasField("output"):
                outcome.output = result.output
            outcomes.append(outcome)
        if outcomes:
            # Urgent once the executor is about to run dry: it has few tasks left to keep it busy.
            self._outbox.put_many(outcomes, urgent=len(in_service) + self._queued_runs <= LOW_WATER)
        self._restart_timer()
        if not self._in_service:
            self._wake.set()

    def _restart_timer(self) -> None:
        """Time the task the service runs now (the first unanswered one) against the task timeout."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task_timeout is not None and self._in_service:
            head = next(iter(self._in_service))
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._task_timeout, self._timed_out, head)

    def _timed_out(self, task_id: str) -> None:
        self._timer = None
        if next(iter(self._in_service), None) == task_id and self._task_timeout is not None:
            self._set_stream_error(
                f"task {task_id} ran past its timeout of {self._task_timeout:g}s; its service was stopped"
            )

    def _set_stream_error(self, reason: str) -> None:
        if self._stream_error is None:
            self._stream_error = reason
        self._wake.set()

    def _fail_in_service(self, reason: str) -> None:
        """The service is gone: the task it was running is retried, the ones behind it never started."""
        for index, task in enumerate(self._in_service.values()):
            self._outcome(task, retryable=True, message=reason, not_started=index > 0)
        self._in_service.clear()

    async def _unbind(self) -> None:
        if self._service is None:
            self._report(ExecutorState.IDLE)
            return
        session_id = self.session_id
        self._move(ExecutorState.UNBINDING)
        try:
            await self._service.leave(self._settings.leave_timeout)
        except ShimError as exc:
            logger.warning("executor %s: OnSessionLeave failed: %s", self.id, _first_line(exc.message))
        await self._stop_service()
        self._move(ExecutorState.IDLE)
        self.session_id = None
        self._report(ExecutorState.IDLE, log_file=True)
        if self._metrics is not None:
            self._metrics.exited("unbound")
        logger.info("executor %s unbound from session %s", self.id, session_id)

    async def _release(self) -> None:
        if self._service is not None:
            await self._unbind()
        self._fail_queued(f"executor {self.id} was released", until_bind=False)
        self._move(ExecutorState.RELEASED)
        self._report(ExecutorState.RELEASED)
        logger.info("executor %s released", self.id)

    # ---- failures ----

    async def _service_lost(self, reason: str) -> None:
        """The service died or hung up: fail what was queued for it and go back to Idle."""
        session_id = self.session_id
        self._fail_in_service(reason)
        self._fail_queued(reason, until_bind=True)
        await self._stop_service()
        self._move(ExecutorState.IDLE)
        self.session_id = None
        self._report(ExecutorState.IDLE, message=reason, log_file=True)
        if self._metrics is not None:
            self._metrics.exited("lost")
        logger.warning("executor %s lost its service (session %s): %s", self.id, session_id, _first_line(reason))

    async def _close(self, reason: str) -> None:
        """Shutdown: fail the running and queued tasks (retryable), stop the service, report Released."""
        interrupted = self._current
        if interrupted is not None:
            self._outcome(interrupted, retryable=True, message=reason)
        busy = interrupted is not None or bool(self._in_service)
        self._fail_in_service(reason)
        self._fail_queued(reason, until_bind=False)
        if self._service is not None and not busy and self.state == ExecutorState.BOUND:
            try:
                await self._service.leave(min(self._settings.leave_timeout, self._settings.stop_grace))
            except ShimError as exc:
                logger.warning("executor %s: OnSessionLeave failed: %s", self.id, _first_line(exc.message))
        await self._stop_service()
        self._move(ExecutorState.RELEASED)
        self.session_id = None
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
        assert self._service is not None
        return _exit_reason(self._service)

    async def _stop_service(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in (self._watcher, self._reader):
            if task is not None:
                task.cancel()
        self._watcher = self._reader = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._stream_error = None
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
        outcome = backend_pb2.TaskOutcome(
            executor_id=self.id,
            session_id=task.session_id,
            task_id=task.task_id,
            state=types_pb2.Succeed if message is None else types_pb2.Failed,
        )
        # Only the fields that differ from their defaults (a keyword given None or False costs as much).
        if output is not None:
            outcome.output = output
        if message is not None:
            outcome.message = message
        if retryable:
            outcome.retryable = True
        if not_started:
            outcome.not_started = True
        self._outbox.put(outcome, urgent=urgent)


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


def _exit_reason(service: HostService) -> str:
    assert service.returncode is not None
    return service.with_log(f"service {describe_exit(service.returncode)} while bound")
