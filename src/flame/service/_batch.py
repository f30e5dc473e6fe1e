"""flame.ext.v1.InstanceExt: tasks in batches, run one after another, results streamed back.

The executor manager keeps several tasks in flight per executor. A plain ``def on_task_invoke``
runs in one dedicated worker thread that takes the tasks in order; it hands results back to the
event loop with one wakeup per burst (the loop collects whatever the thread finished since the
last wakeup), never one thread hop per task. An ``async def on_task_invoke`` runs on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import queue
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import grpc

from flame.protocol import ext_pb2, ext_pb2_grpc
from flame.service._context import SessionContext, TaskContext

logger = logging.getLogger(__name__)

# The metadata our InstanceExt sends first, so the executor manager knows the stream is served.
BATCH_METADATA = (("flame-batch", "1"),)
# Most results one ResultBatch carries.
MAX_RESULTS = 1_000

Invoke = Callable[[TaskContext], Any]


class Result(NamedTuple):
    """One task's answer, as an InvokeResult of the stream will carry it."""

    task_id: str
    return_code: int
    output: bytes | None = None
    message: str | None = None


def result_batch(results: list[Result]) -> ext_pb2.ResultBatch:
    """The results as one message, each built in place (an InvokeResult made first would be
    copied in again: about twice the cost, for every task)."""
    batch = ext_pb2.ResultBatch()
    add = batch.results.add
    for task_id, return_code, output, message in results:
        result = add(task_id=task_id, return_code=return_code)
        if output is not None:
            result.output = output
        if message is not None:
            result.message = message
    return batch


def describe(exc: BaseException) -> str:
    """``ValueError: bad input`` (the type alone when the exception has no text)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_task(session: SessionContext | None, task: TaskContext) -> str | None:
    """Why ``task`` may not run in the entered ``session``; None when it may."""
    if session is None:
        return f"task {task.task_id} refused: no session entered yet (OnSessionEnter must succeed first)"
    if task.session_id and task.session_id != session.session_id:
        return (
            f"task {task.task_id} belongs to session {task.session_id}, not to the entered session {session.session_id}"
        )
    return None


def as_output(output: Any) -> bytes | None:
    if isinstance(output, (bytearray, memoryview)):
        return bytes(output)
    if output is not None and not isinstance(output, bytes):
        raise TypeError(f"on_task_invoke must return bytes or None, not {type(output).__name__}")
    return output


def _failed(task: TaskContext, exc: Exception) -> Result:
    logger.error("task %s of session %s failed\n%s", task.task_id, task.session_id, traceback.format_exc())
    return Result(task.task_id, -1, message=describe(exc))


def run_sync(invoke: Invoke, task: TaskContext) -> Result:
    """Run a plain ``on_task_invoke`` (in the calling thread)."""
    try:
        output = invoke(task)
        if inspect.isawaitable(output):  # a plain function that returned a coroutine
            output = asyncio.run(_awaited(output))
        return Result(task.task_id, 0, as_output(output))
    except Exception as exc:
        return _failed(task, exc)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def run_async(invoke: Invoke, task: TaskContext) -> Result:
    try:
        return Result(task.task_id, 0, as_output(await invoke(task)))
    except Exception as exc:
        return _failed(task, exc)


class _Results:
    """Finished results waiting for the response stream; filled from the loop or the worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Result] = []
        self._wake_pending = False
        self._ready = asyncio.Event()

    def add_from_thread(self, result: Result) -> None:
        with self._lock:
            self._items.append(result)
            wake, self._wake_pending = not self._wake_pending, True
        if wake:  # one wakeup per burst: later results join the list until the loop takes it
            self._loop.call_soon_threadsafe(self._ready.set)

    def add(self, result: Result) -> None:
        with self._lock:
            self._items.append(result)
        self._ready.set()

    async def take(self) -> list[Result]:
        while True:
            await self._ready.wait()
            with self._lock:
                self._ready.clear()
                self._wake_pending = False
                items, self._items = self._items, []
            if items:
                return items


class _ThreadRunner:
    """One worker thread running a plain on_task_invoke over the tasks in arrival order."""

    def __init__(self, invoke: Invoke, results: _Results) -> None:
        self._invoke = invoke
        self._results = results
        self._tasks: queue.SimpleQueue[TaskContext | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="flame-task-runner", daemon=True)
        self._thread.start()

    def put(self, task: TaskContext) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Stop after the tasks already queued (the thread is a daemon: a hung task cannot block exit)."""
        self._tasks.put(None)

    def _main(self) -> None:
        while (task := self._tasks.get()) is not None:
            self._results.add_from_thread(run_sync(self._invoke, task))


class _LoopRunner:
    """An ``async def on_task_invoke`` over the tasks in arrival order, on the event loop.

    A deque and an event rather than an asyncio.Queue: a put and a get per task cost more than
    a no-op task itself, and the worker only sleeps once it has run out of tasks.
    """

    def __init__(self, invoke: Invoke, results: _Results) -> None:
        self._invoke = invoke
        self._results = results
        self._tasks: collections.deque[TaskContext] = collections.deque()
        self._ready = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._main(), name="flame-task-runner")

    def put(self, task: TaskContext) -> None:
        self._tasks.append(task)
        self._ready.set()

    def close(self) -> None:
        self._worker.cancel()

    async def _main(self) -> None:
        tasks = self._tasks
        while True:
            while not tasks:
                self._ready.clear()
                await self._ready.wait()
            self._results.add(await run_async(self._invoke, tasks.popleft()))


class InstanceExtServicer(ext_pb2_grpc.InstanceExtServicer):
    """Streamed invoke over the same service and the same entered session as the Instance servicer."""

    def __init__(self, invoke: Invoke, session: Callable[[], SessionContext | None]) -> None:
        self._invoke = invoke
        self._session = session

    async def Invoke(
        self, request_iterator: AsyncIterator[ext_pb2.InvokeBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ext_pb2.ResultBatch]:
        await context.send_initial_metadata(BATCH_METADATA)
        results = _Results(asyncio.get_running_loop())
        runner: _ThreadRunner | _LoopRunner
        if inspect.iscoroutinefunction(self._invoke):
            runner = _LoopRunner(self._invoke, results)
        else:
            runner = _ThreadRunner(self._invoke, results)
        reader = asyncio.create_task(self._read(request_iterator, runner, results), name="flame-invoke-reader")
        try:
            while True:
                items = await results.take()
                for start in range(0, len(items), MAX_RESULTS):
                    yield result_batch(items[start : start + MAX_RESULTS])
        finally:
            reader.cancel()
            runner.close()

    async def _read(
        self, requests: AsyncIterator[ext_pb2.InvokeBatch], runner: _ThreadRunner | _LoopRunner, results: _Results
    ) -> None:
        async for batch in requests:
            session = self._session()
            for item in batch.tasks:
                task = TaskContext(
                    task_id=item.task_id,
                    session_id=item.session_id,
                    input=item.input if item.HasField("input") else None,
                )
                refusal = check_task(session, task)
                if refusal is None:
                    runner.put(task)
                else:
                    results.add(Result(task.task_id, -1, message=refusal))
