"""The storage engine interface and the group-commit writer every engine shares.

Why group commit: an fsync-per-task design caps a session manager at a few hundred tasks per second,
while the hot path needs thousands. So records are queued and, whenever the engine's writer thread
is idle, everything queued so far is cut as one batch, reduced, and committed in one transaction.
While that transaction commits, new records pile up and become the next batch, so batches grow
exactly when the store is the bottleneck, with no timer and no added latency when it is idle.

The event loop does the cheap, ordered part: it captures each record when it is written (a row
tuple for SQL, a copy for memory), reduces the batch and turns it into a commit callable. The
writer thread does the I/O and wakes the batch's waiters with one ``call_soon_threadsafe``.
Reads run in a reader thread on a connection of their own, each started once every record
written before it is committed, so they see those records and never delay a commit.

Engines supply the hooks below: capture, merge and prepare run on the loop; open and close in
the writer thread, open_reader, close_reader and the reads in the reader thread (all inline, for
an engine with ``_threaded = False``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from flame.errors import FlameError, Internal, InvalidArgument, InvalidState, Unavailable
from flame.session_manager.storage._records import (
    Batch,
    DeleteApplication,
    DeleteSession,
    Entry,
    PutApplication,
    PutSession,
    PutTask,
    Record,
    StoredState,
    UpdateTask,
    plan_batch,
)
from flame.session_manager.storage._writer import EngineThread
from flame.types import Application, Session, Task, TaskState

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Told on the event loop how the batch holding a write_nowait()'s records ended: None once it is
#: committed, or the error (Internal, Unavailable) when nothing of it was written.
OnCommit = Callable[[BaseException | None], None]


class _Flight:
    """Who to tell when one batch has committed or failed."""

    __slots__ = ("callbacks", "records", "started", "waiters")

    def __init__(self, waiters: list[asyncio.Future[None]], callbacks: list[OnCommit], records: int) -> None:
        self.waiters = waiters
        self.callbacks = callbacks
        self.records = records
        self.started = time.perf_counter()


class Storage(ABC):
    """A durable (or, for memory, merely consistent) store of applications, sessions and tasks.

    Lifecycle: ``start()``, ``load()`` once, any number of writes and reads, then ``stop()``.
    ``async with`` does start and stop. ``commits`` counts committed batches, so tests and metrics
    can see how well writes are being grouped.
    """

    #: True when the engine does blocking I/O: its hooks then run in the writer thread.
    _threaded: bool = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.commits = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: EngineThread | None = None  # the writer
        self._reader: EngineThread | None = None
        self._retired: list[EngineThread] = []  # left to finish by a cancelled stop()
        self._started = False
        # Called with (records, seconds) after each batch commits (metrics).
        self.on_batch_committed: list[Callable[[int, float], None]] = []
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._pending: list[Entry] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._callbacks: list[OnCommit] = []
        self._flight: _Flight | None = None
        self._cut_scheduled = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- engine hooks: on the event loop ---------------------------------------------------------

    @abstractmethod
    def _capture_application(self, app: Application) -> Any:
        """What a PutApplication stores, taken now: later changes to ``app`` must not show in it."""

    @abstractmethod
    def _capture_session(self, session: Session) -> Any:
        """What a PutSession stores, taken now."""

    @abstractmethod
    def _capture_task(self, task: Task) -> Any:
        """What a PutTask stores, taken now."""

    @abstractmethod
    def _merge_update(self, captured: Any, update: UpdateTask) -> Any:
        """A captured task with ``update`` applied (its fields replaced, its event appended)."""

    @abstractmethod
    def _prepare(self, batch: Batch) -> Callable[[], None]:
        """Return the callable that commits ``batch``: all of it atomically, or nothing and raise."""

    # -- engine hooks: in the writer thread ------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open (creating or upgrading if needed) the underlying store."""

    @abstractmethod
    def _close(self) -> None:
        """Release the underlying store; called once, after the last commit."""

    # -- engine hooks: in the reader thread ------------------------------------------------------

    @abstractmethod
    def _open_reader(self) -> None:
        """Open the reads' own connection (after _open has prepared the schema)."""

    @abstractmethod
    def _close_reader(self) -> None:
        """Release the reads' connection; called once, after the last read."""

    @abstractmethod
    def _read_state(self, closed_tasks: bool, finished_tasks: bool) -> StoredState:
        """Read the stored state as fresh objects, with counters counted from the stored tasks."""

    @abstractmethod
    def _read_task(self, session_id: str, task_id: str) -> Task | None:
        """One stored task, or None."""

    @abstractmethod
    def _read_tasks(
        self, session_id: str, offset: int, limit: int | None, states: tuple[int, ...] | None
    ) -> list[Task]:
        """A page of a session's tasks in task order, optionally only those in ``states``."""

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def writer_thread(self) -> threading.Thread | None:
        """The thread this engine commits and reads in (None for an engine that does no I/O), for
        metrics such as its CPU time."""
        return None if self._worker is None else self._worker.thread

    @property
    def running(self) -> bool:
        """True between start() and the beginning of stop(): writes are accepted."""
        return self._started and not self._stopping

    async def start(self) -> None:
        """Open the store and, for an engine doing I/O, start its writer and reader threads."""
        if self._started:
            raise InvalidState(f"storage {self.url} is already started")
        loop = asyncio.get_running_loop()
        retired, self._retired = self._retired, []
        for thread in retired:  # its last jobs touch this engine's connections: let them finish first
            await asyncio.to_thread(thread.join)
        writer = reader = None
        if self._threaded:
            writer = EngineThread(f"flame-storage-writer {self.url}", loop)
            reader = EngineThread(f"flame-storage-reader {self.url}", loop)
            writer.start()
            try:
                await _in_thread(writer, self._open)
            except BaseException:
                writer.stop()
                raise
            reader.start()
            try:
                await _in_thread(reader, self._open_reader)
            except BaseException:
                writer.submit(self._close, _ignore)
                writer.stop()
                reader.stop()
                raise
        else:
            self._open()
        self._loop, self._worker, self._reader = loop, writer, reader
        self._started, self._stopping = True, False
        self._stopped = asyncio.Event()
        logger.info("storage %s started", self.url)

    async def stop(self) -> None:
        """Commit everything queued, close the store and end its threads. Safe to call twice."""
        stopped = self._stopped
        if not self._started or stopped is None:
            return
        if self._stopping:  # another stop() is draining: wait for it to finish
            await stopped.wait()
            return
        self._stopping = True
        writer, reader, closed = self._worker, self._reader, False
        try:
            await self.flush()
            if writer is not None and reader is not None:
                await _in_thread(writer, self._close)
                await _in_thread(reader, self._close_reader)
            else:
                self._close()
            closed = True
        finally:
            for thread, close in ((writer, self._close), (reader, self._close_reader)):
                if thread is None:
                    continue
                if not closed:  # stop() was cancelled or a close failed: let the thread close behind us
                    thread.submit(close, _ignore)
                thread.stop()
                if closed:
                    await asyncio.to_thread(thread.join)
                else:
                    self._retired.append(thread)
            self._started = False
            stopped.set()
            logger.info("storage %s stopped after %d commits", self.url, self.commits)

    async def __aenter__(self) -> Storage:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, *records: Record) -> None:
        """Queue records and return once the batch holding them is committed.

        Raises Internal (with the engine's error as its cause) if that batch failed to commit;
        then none of the batch was applied.
        """
        if not records:
            return
        self._enqueue(records)
        waiter: asyncio.Future[None] = self._require_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def write_nowait(self, *records: Record, on_commit: OnCommit | None = None) -> None:
        """Queue records for the next batch without waiting.

        ``on_commit``, if given, is called on the event loop once that batch has committed (with
        None) or failed (with the error; then nothing of the batch was written); with no records,
        once everything queued before has. Without it a failed commit is only logged. A call costs
        no future and no task, however many records it holds.
        """
        if records:
            self._enqueue(records)
            if on_commit is not None:
                self._callbacks.append(on_commit)
        elif on_commit is not None:
            self._require_running()
            self._after_queued(on_commit)

    async def flush(self) -> None:
        """Wait until every record queued before this call is committed or its batch has failed."""
        if self._pending or self._flight is not None:
            done: asyncio.Future[None] = self._require_loop().create_future()
            self._after_queued(partial(_wake, done))
            await done

    def _after_queued(self, callback: OnCommit) -> None:
        """Call ``callback`` once everything queued so far is committed (or its batch failed)."""
        if self._pending:
            self._callbacks.append(callback)
        elif self._flight is not None:
            self._flight.callbacks.append(callback)
        else:
            self._require_loop().call_soon(callback, None)

    def _enqueue(self, records: tuple[Record, ...]) -> None:
        if not self._started or self._stopping:
            self._require_running()
        if len(records) == 1:
            self._pending.append(self._capture(records[0]))
        else:
            self._pending.extend([self._capture(record) for record in records])  # a bad record queues none
        if self._flight is None and not self._cut_scheduled:
            # Not now: whatever else is written in this turn of the loop joins the same batch.
            self._cut_scheduled = True
            self._require_loop().call_soon(self._cut)

    def _capture(self, record: Record) -> Entry:
        if isinstance(record, UpdateTask):
            return (record, None)
        if isinstance(record, PutTask):
            return (record, self._capture_task(record.task))
        if isinstance(record, PutSession):
            return (record, self._capture_session(record.session))
        if isinstance(record, PutApplication):
            return (record, self._capture_application(record.app))
        if isinstance(record, (DeleteSession, DeleteApplication)):
            return (record, None)
        raise TypeError(f"not a storage record: {record!r}")

    # -- reads ----------------------------------------------------------------------------------

    async def load(self, *, closed_tasks: bool = True, finished_tasks: bool = True) -> StoredState:
        """Read the applications, the sessions and their tasks. ``closed_tasks=False`` leaves out
        the tasks of closed sessions, ``finished_tasks=False`` those in a final state (read them
        with get_task/list_tasks when asked).

        Every session's counters are counted from its stored tasks, loaded or not, and its
        next_task_id is past every stored task id.
        """
        self._require_running("call start() before load()")
        return await self._read(partial(self._read_state, closed_tasks, finished_tasks))

    async def get_task(self, session_id: str, task_id: str) -> Task | None:
        """The stored task, as of every record written before this call; None if it is not stored."""
        self._require_running("call start() before reading")
        return await self._read(partial(self._read_task, session_id, task_id))

    async def list_tasks(
        self,
        session_id: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        states: Iterable[TaskState] | None = None,
    ) -> list[Task]:
        """A session's stored tasks in task-id order (numeric ids by number), as of every record
        written before this call: ``limit`` of them (all if None) after skipping ``offset``, only
        those in ``states`` if given."""
        self._require_running("call start() before reading")
        offset, limit, chosen = _page(offset, limit, states)
        if chosen == () or limit == 0:
            return []
        return await self._read(partial(self._read_tasks, session_id, offset, limit, chosen))

    async def _read(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` once every record already queued is committed (or its batch failed)."""
        reader = self._reader
        if reader is None:  # inline engine: commit what is queued, then read
            if self._pending:
                self._cut()
            return work()
        done: asyncio.Future[_T] = self._require_loop().create_future()
        job = (work, partial(_settle_read, done, self.url))

        def submit(_error: BaseException | None = None) -> None:
            if reader.stopped:  # a cancelled stop() let go of the store meanwhile
                _settle(done, None, Unavailable(f"storage {self.url} stopped before this read"))
            else:
                reader.submit(*job)

        if self._pending or self._flight is not None:
            self._after_queued(submit)
        else:
            submit()
        return await done

    # -- the writer -----------------------------------------------------------------------------

    def _cut(self) -> None:
        """Make everything queued one batch and hand it to the writer (or commit it, if inline)."""
        self._cut_scheduled = False
        if self._flight is not None or not self._pending:
            return
        entries, waiters, callbacks = self._pending, self._waiters, self._callbacks
        self._pending, self._waiters, self._callbacks = [], [], []
        flight = _Flight(waiters, callbacks, len(entries))
        worker = self._worker
        if worker is not None and worker.stopped:  # stop() was cancelled: nobody will commit this
            self._settle_flight(flight, Unavailable(f"storage {self.url} stopped before committing this write"))
            return
        try:
            commit = self._prepare(plan_batch(entries, self._merge_update))
        except Exception as exc:
            self._batch_done(flight, None, exc)
            commit = None
        if commit is not None:
            if worker is None:
                error: BaseException | None = None
                try:
                    commit()
                except Exception as exc:
                    error = exc
                self._batch_done(flight, None, error)
            else:
                self._flight = flight
                worker.submit(commit, partial(self._batch_done, flight))

    def _batch_done(self, flight: _Flight, _result: object, error: BaseException | None) -> None:
        """On the loop, once per batch: wake its waiters and callbacks, then cut the next batch."""
        if self._flight is flight:
            self._flight = None
        if error is None:
            self.commits += 1
            logger.debug("storage %s: committed %d records as batch %d", self.url, flight.records, self.commits)
            for hook in self.on_batch_committed:
                hook(flight.records, time.perf_counter() - flight.started)
            self._settle_flight(flight, None)
        else:
            logger.error(
                "storage %s: a batch of %d records failed to commit and was rolled back",
                self.url,
                flight.records,
                exc_info=error,
            )
            self._settle_flight(flight, _commit_failed(self.url, error))
        if self._pending and self._flight is None:
            if self._worker is not None:
                self._cut()  # the writer is idle and work is waiting: no need to wait a turn
            elif not self._cut_scheduled:
                self._cut_scheduled = True
                self._require_loop().call_soon(self._cut)

    def _settle_flight(self, flight: _Flight, error: FlameError | None) -> None:
        for waiter in flight.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:  # each its own exception: one object raised in many tasks piles up tracebacks
                    waiter.set_exception(_copy_error(error))
        for callback in flight.callbacks:
            try:
                callback(None if error is None else _copy_error(error))
            except Exception:
                logger.exception("storage %s: an on_commit callback raised", self.url)

    # -- helpers --------------------------------------------------------------------------------

    def _require_running(self, hint: str = "writes are accepted between start() and stop()") -> None:
        if not self.running:
            raise InvalidState(f"storage {self.url} is not running: {hint}")

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise InvalidState(f"storage {self.url} is not running: call start() first")
        return self._loop

    async def _in_worker(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in the writer thread, after the commits already handed to it."""
        if self._worker is None:
            raise InvalidState(f"storage {self.url} has no writer thread")
        return await _in_thread(self._worker, work)


async def _in_thread(thread: EngineThread, work: Callable[[], _T]) -> _T:
    done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
    thread.submit(work, partial(_settle, done))
    return await done


def _page(
    offset: int, limit: int | None, states: Iterable[TaskState] | None
) -> tuple[int, int | None, tuple[int, ...] | None]:
    """Check list_tasks' paging arguments; raise InvalidArgument saying what is accepted."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"list_tasks: offset must be a whole number >= 0, got {offset!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"list_tasks: limit must be a whole number >= 0 or None (no limit), got {limit!r}")
    if states is None:
        return offset, limit, None
    chosen: list[int] = []
    for state in states:
        if not isinstance(state, TaskState):
            names = ", ".join(s.name for s in TaskState)
            raise InvalidArgument(f"list_tasks: states must be TaskState values ({names}), got {state!r}")
        chosen.append(int(state))
    return offset, limit, tuple(sorted(set(chosen)))


def _commit_failed(url: str, cause: BaseException) -> FlameError:
    error = Internal(f"storage {url}: commit failed, nothing of the batch was written: {cause}")
    error.__cause__ = cause
    return error


def _copy_error(error: FlameError) -> FlameError:
    copy = type(error)(error.message)
    copy.__cause__ = error.__cause__
    return copy


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _settle_read(future: asyncio.Future[Any], url: str, result: object, error: BaseException | None) -> None:
    if error is not None and not isinstance(error, FlameError):
        cause, error = error, Internal(f"storage {url}: read failed: {error}")
        error.__cause__ = cause
    _settle(future, result, error)


def _wake(future: asyncio.Future[None], _error: BaseException | None) -> None:
    if not future.done():
        future.set_result(None)


def _ignore(_result: object, _error: BaseException | None) -> None:
    pass
