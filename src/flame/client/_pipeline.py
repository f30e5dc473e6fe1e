"""The fast path of one session: batched submission and one result stream.

Submissions are queued and drained by one sender task, which sends everything pending in
one request on the session's FrontendExt.SubmitStream (so concurrent submits coalesce while a
request is in flight; a message on an open stream costs both ends less than a new call).
Results of every task of the session arrive on one FrontendExt.WatchSession stream, opened
before the first submission, and are dispatched to per-task futures by task id.

A result must not slip past before the stream is registered on the server. A stream with
include_completed=True cannot miss one (completed tasks are replayed), so it is used when that
replay is empty anyway (the session had no finished task) and after a reconnect with tasks
outstanding. Otherwise (include_completed=False) the sender waits until the server
acknowledges the stream by sending its initial metadata.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, TypeAlias

import grpc

from flame.errors import FlameError, Internal, InvalidState, TaskFailed, Unavailable
from flame.protocol import error_from_status, ext_pb2
from flame.types import TaskState

logger = logging.getLogger(__name__)

MAX_BATCH_TASKS = 10_000
MAX_BATCH_BYTES = 2 * 1024 * 1024  # well under gRPC's default 4 MiB message limit
WATCH_ACK_TIMEOUT = 5.0  # how long to wait for the server to acknowledge a new result stream
RECONNECT_GIVE_UP = 30.0  # seconds without a working result stream before outstanding tasks fail
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)


class TaskFuture(concurrent.futures.Future[bytes]):
    """The future of a task submitted through a blocking Session: a concurrent.futures.Future
    that also tells its session's pipeline when its owner cancels it.

    Instead of a done-callback per task (each one a lock, a partial and a call on every result),
    the pipeline writes itself and the task id into the future once the task exists.
    """

    _pipeline: TaskPipeline | None = None
    _task_id = ""

    def cancel(self) -> bool:
        cancelled = super().cancel()
        pipeline = self._pipeline
        if cancelled and pipeline is not None:
            pipeline.cancelled_elsewhere(self._task_id)
        return cancelled


MapError = Callable[[grpc.RpcError, str], FlameError]
# Where a task's outcome goes: the async API's asyncio future, or the blocking API's
# TaskFuture directly (no second future and no thread hop per task).
Sink: TypeAlias = "asyncio.Future[bytes] | TaskFuture"
Entry = tuple[bytes, Sink]


class Outcome(NamedTuple):
    """What the result stream says of one finished task."""

    task_id: str
    state: int
    output: bytes | None
    message: str | None


def outcomes(batch: Any) -> list[Outcome]:
    """The finished tasks of a TaskBatch, compact (``results``) or whole (``tasks``)."""
    found = [
        Outcome(r.id, r.state, r.output if r.HasField("output") else None, r.message if r.HasField("message") else None)
        for r in batch.results
    ]
    for task in batch.tasks:
        output = task.spec.output if task.spec.HasField("output") else None
        found.append(Outcome(task.metadata.id, task.status.state, output, _last_event_message(task)))
    return found


def _last_event_message(task: Any) -> str | None:
    for event in reversed(task.status.events):
        if event.code == task.status.state and event.HasField("message"):
            return str(event.message)
    return None


def _settle(sink: Sink, result: bytes | None = None, error: BaseException | None = None) -> None:
    """Complete ``sink`` unless its owner cancelled it (possibly from another thread, just now).

    No done() first: for a concurrent future that is one more lock per task, and the call
    refuses a cancelled future anyway."""
    try:
        if error is None:
            sink.set_result(result if result is not None else b"")
        else:
            sink.set_exception(error)
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        pass  # cancelled between the check and the call


def resolve(sink: Sink, outcome: Outcome, session_id: str) -> None:
    """Complete ``sink`` from a final outcome (Succeed, Failed or Cancelled)."""
    if outcome.state == TaskState.SUCCEED:
        _settle(sink, outcome.output)
        return
    if outcome.state == TaskState.FAILED:
        message = outcome.message or "task failed without a message"
    else:
        message = f"task was cancelled: {outcome.message or 'its session was closed'}"
    _settle(sink, error=TaskFailed(message, session_id=session_id, task_id=outcome.task_id))


async def _final_status(call: Any, error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """How ``call`` ended (code, details); ``error``'s own if that is not known within a second."""
    try:
        code = await asyncio.wait_for(call.code(), 1.0)
        return code, await call.details()
    except (asyncio.TimeoutError, grpc.RpcError):
        return error.code(), error.details() or ""


def fail_sinks(sinks: Iterable[Sink], error: FlameError) -> None:
    """Fail every sink that is not done yet with ``error``."""
    for sink in sinks:
        _settle(sink, error=error)


class TaskPipeline:
    """Submits tasks of one session and routes their results back; owned by an AsyncSession."""

    def __init__(self, session_id: str, ext_stub: Any, map_error: MapError, *, replay_is_empty: bool) -> None:
        """``replay_is_empty``: the session had no finished task, so the first stream may ask for them."""
        self._session_id = session_id
        self._replay_first = replay_is_empty
        self._ext = ext_stub
        self._map_error = map_error
        self._queue: collections.deque[Entry] = collections.deque()
        self._cancels: list[str] = []  # ids of submitted tasks whose futures were cancelled
        self._sending: list[Sink] = []
        self._outstanding: dict[str, Sink] = {}
        self._early: dict[str, Outcome] = {}  # results that beat their SubmitTasks response
        self._in_flight = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._watch_ready = asyncio.Event()
        self._watch_error: FlameError | None = None
        self._sender: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._streams_opened = 0
        self._submits: Any = None  # the SubmitStream call, open while the session submits
        self._stream_submits = True  # False once the server said it has no SubmitStream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle.set()

    def submit(self, data: bytes) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.submit_entries([(data, future)])
        return future

    def submit_entries(self, entries: Iterable[Entry]) -> None:
        """Queue tasks whose outcomes go to the given sinks (on the loop thread)."""
        self._loop = asyncio.get_running_loop()
        self._queue.extend(entries)
        self._idle.clear()
        self._wakeup.set()
        if self._watcher is None or self._watcher.done():
            self._watch_error = None
            self._watch_ready.clear()
            self._watcher = asyncio.create_task(self._guard(self._watch_loop()), name=f"flame-watch-{self._session_id}")
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._guard(self._send_loop()), name=f"flame-submit-{self._session_id}")

    async def drain(self) -> None:
        """Return once every queued task has been sent (or failed)."""
        if self._sender is not None and not self._sender.done():
            await self._idle.wait()

    async def finish(self, timeout: float) -> None:
        """After the session was closed: let the stream deliver the last results, then stop."""
        watcher = self._watcher
        if watcher is not None and not watcher.done() and self._outstanding:
            try:
                await asyncio.wait_for(asyncio.shield(watcher), timeout)
            except asyncio.TimeoutError:
                logger.warning("session %s: results still missing %g s after close", self._session_id, timeout)
        await self.abort(InvalidState(f"session {self._session_id} was closed before the task completed"))

    async def abort(self, error: FlameError) -> None:
        """Stop both background tasks now; every unfinished task fails with ``error``."""
        tasks = [t for t in (self._sender, self._watcher) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._close_submits()
        self._fail_everything(error)

    # -- sender ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            if self._cancels:
                await self._send_cancels()
                continue
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._watch_ready.wait()  # the result stream is registered (or failed for good)
            if self._watch_error is not None:
                failed, self._queue = [f for _, f in self._queue], collections.deque()
                fail_sinks(failed, self._watch_error)
                continue
            inputs = self._take_batch()
            if inputs:
                await self._send(inputs)

    def _take_batch(self) -> list[bytes]:
        inputs: list[bytes] = []
        size = 0
        while self._queue and len(inputs) < MAX_BATCH_TASKS:
            data, future = self._queue[0]
            if inputs and size + len(data) > MAX_BATCH_BYTES:
                break
            self._queue.popleft()
            if not future.done():  # skip tasks cancelled before they were sent
                inputs.append(data)
                self._sending.append(future)
                size += len(data)
        return inputs

    async def _send(self, inputs: list[bytes]) -> None:
        futures = self._sending
        request = ext_pb2.SubmitTasksRequest(session_id=self._session_id, inputs=inputs)
        what = f"submit tasks to session {self._session_id}"
        self._in_flight = True
        try:
            try:
                first_task_id, count = await self._submit(request, what)
            except grpc.RpcError as exc:
                fail_sinks(futures, self._map_error(exc, what))
                return
            except FlameError as exc:
                fail_sinks(futures, exc)
                return
            if count != len(futures):
                fail_sinks(futures, Internal(f"server accepted {count} of {len(futures)} submitted tasks"))
                return
            for offset, future in enumerate(futures):
                task_id = str(first_task_id + offset)
                early = self._early.pop(task_id, None)
                if early is not None:
                    resolve(future, early, self._session_id)
                elif self._watch_error is not None:  # the stream ended while this call was in flight
                    fail_sinks([future], self._watch_error)
                elif future.cancelled():
                    self._cancel(task_id)
                else:
                    self._outstanding[task_id] = future
                    if isinstance(future, TaskFuture):
                        future._task_id, future._pipeline = task_id, self
                        if future.cancelled():  # just now, before it could tell us
                            self._cancel_outstanding(task_id)
                    else:
                        future.add_done_callback(functools.partial(self._on_done, task_id))
        finally:
            self._sending = []
            self._in_flight = False
            self._early.clear()  # whatever is left belongs to someone else's submissions

    async def _submit(self, request: Any, what: str) -> tuple[int, int]:
        """(first task id, count): over the submit stream, opened on first use; by SubmitTasks if the
        server has no SubmitStream. A broken stream fails this request (as a failed call would:
        its tasks may or may not exist) and is opened again for the next."""
        if self._stream_submits and (self._submits is None or self._submits.done()):
            await self._open_submits()
        if not self._stream_submits:
            response = await self._ext.SubmitTasks(request)
            return response.first_task_id, response.count
        submits = self._submits
        try:
            await submits.write(request)
            reply = await submits.read()
        except grpc.RpcError as exc:
            # A write to a call the server already ended fails with a status of its own: the
            # call's final status says why it ended.
            code, details = await _final_status(submits, exc)
            self._close_submits()
            raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details) from exc
        if reply is grpc.aio.EOF:
            self._close_submits()
            raise Unavailable(f"{what}: the server ended the submit stream")
        if reply.code:
            raise error_from_status(reply.code, reply.message, what)
        return reply.first_task_id, reply.count

    async def _open_submits(self) -> None:
        """Open the submit stream; the server's initial metadata says it is there before any request
        is sent, so a server without SubmitStream costs nothing but a fall-back to SubmitTasks."""
        call = self._ext.SubmitStream()
        await call.initial_metadata()
        if not call.done():
            self._submits = call
            return
        code = await call.code()
        if code != grpc.StatusCode.UNIMPLEMENTED:  # refused (credentials, role) or unreachable
            raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), await call.details())
        self._stream_submits = False

    def _close_submits(self) -> None:
        submits, self._submits = self._submits, None
        if submits is not None:
            submits.cancel()

    def _on_done(self, task_id: str, future: asyncio.Future[bytes]) -> None:
        if future.cancelled():
            self._cancel(task_id)

    def cancelled_elsewhere(self, task_id: str) -> None:
        """A TaskFuture's owner cancelled it (in any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing runs it now
                loop.call_soon_threadsafe(self._cancel_outstanding, task_id)

    def _cancel_outstanding(self, task_id: str) -> None:
        """Cancel a submitted task unless that was done already (a TaskFuture may tell us twice)."""
        if task_id in self._outstanding:
            self._cancel(task_id)

    def _cancel(self, task_id: str) -> None:
        """The owner cancelled the future of a submitted task: ask the cluster not to run it."""
        self._outstanding.pop(task_id, None)
        self._cancels.append(task_id)
        self._wakeup.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._guard(self._send_loop()), name=f"flame-submit-{self._session_id}")

    async def _send_cancels(self) -> None:
        ids, self._cancels = self._cancels, []
        request = ext_pb2.CancelTasksRequest(session_id=self._session_id, task_ids=ids)
        try:
            await self._ext.CancelTasks(request)
        except grpc.RpcError as exc:  # the task may run anyway; its future stays cancelled
            logger.warning("session %s: cancelling %d task(s) failed: %s", self._session_id, len(ids), exc.code())

    # -- result stream ----------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        last_ok = time.monotonic()
        failures = 0
        while True:
            if self._streams_opened == 0:
                include_completed = self._replay_first
            else:  # replay only when results may have been missed meanwhile
                include_completed = self._in_flight or bool(self._outstanding)
            self._streams_opened += 1
            self._watch_ready.clear()
            request = ext_pb2.WatchSessionRequest(
                session_id=self._session_id, include_completed=include_completed, compact=True
            )
            call = self._ext.WatchSession(request)
            try:
                if include_completed:
                    self._watch_ready.set()  # nothing can be missed: no need to wait for the server
                elif await self._await_ack(call):
                    last_ok, failures = time.monotonic(), 0
                async for batch in call:
                    last_ok, failures = time.monotonic(), 0
                    self._dispatch(outcomes(batch))
                error: FlameError = InvalidState(f"session {self._session_id} was closed before the task completed")
            except grpc.RpcError as exc:
                error = self._map_error(exc, f"watch session {self._session_id}")
                retry = exc.code() in _RETRY_CODES and (self._in_flight or bool(self._outstanding))
                if retry and time.monotonic() - last_ok < RECONNECT_GIVE_UP:
                    failures += 1
                    logger.info("session %s: result stream lost (%s); reconnecting", self._session_id, exc.code())
                    await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                    continue
            finally:
                call.cancel()
            self._watch_error = error
            self._watch_ready.set()  # wake the sender so it fails queued tasks instead of waiting
            fail_sinks(self._outstanding.values(), error)
            self._outstanding.clear()
            return

    async def _await_ack(self, call: Any) -> bool:
        """Wait for the initial metadata the server sends once the stream is registered."""
        acknowledged = False
        try:
            await asyncio.wait_for(call.initial_metadata(), WATCH_ACK_TIMEOUT)
            acknowledged = not call.done()  # a refused call also ends its wait for metadata
        except asyncio.TimeoutError:
            # The server does not acknowledge streams; go on rather than stall the session.
            logger.warning(
                "session %s: result stream not acknowledged within %g s; submitting anyway",
                self._session_id,
                WATCH_ACK_TIMEOUT,
            )
        self._watch_ready.set()
        return acknowledged

    def _dispatch(self, finished: Iterable[Outcome]) -> None:
        for outcome in finished:
            future = self._outstanding.pop(outcome.task_id, None)
            if future is not None:
                resolve(future, outcome, self._session_id)
            elif self._in_flight:
                self._early[outcome.task_id] = outcome
            # else: a task of another client, or a duplicate after a reconnect

    # -- failure handling -------------------------------------------------------------------

    async def _guard(self, body: Awaitable[None]) -> None:
        try:
            await body
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: never leave callers waiting forever
            logger.exception("session %s: task pipeline crashed", self._session_id)
            self._fail_everything(Internal(f"task pipeline of session {self._session_id} crashed: {exc!r}"))

    def _fail_everything(self, error: FlameError) -> None:
        queued = [f for _, f in self._queue]
        self._queue.clear()
        fail_sinks([*queued, *self._sending, *self._outstanding.values()], error)
        self._sending = []
        self._outstanding.clear()
        self._early.clear()
        self._idle.set()
        self._watch_ready.set()  # a sender waiting for the stream must not wait forever
