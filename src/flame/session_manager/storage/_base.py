"""The storage engine interface and the group-commit writer every engine shares.

Why group commit: an fsync-per-task design caps a session manager at a few hundred tasks per second,
while the hot path needs thousands. So records are queued, one writer task takes everything queued
so far as one batch, reduces it, and commits it in one transaction. While that transaction commits
in a worker thread, new records pile up and become the next batch, so batches grow exactly when the
store is the bottleneck, with no timer and no added latency when it is idle.

Engines supply four hooks: open, close, load, and prepare (turn a reduced batch into a commit
callable). Prepare runs on the event loop, so the records' objects are serialized in the same
instant the batch is cut and later mutations by the caller cannot leak into it; the callable it
returns does the I/O, in a worker thread when the engine says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from types import TracebackType

from flame.errors import Internal, InvalidState, Unavailable
from flame.session_manager.storage._records import RECORD_TYPES, Batch, Record, StoredState, plan_batch

logger = logging.getLogger(__name__)


class Storage(ABC):
    """A durable (or, for memory, merely consistent) store of applications, sessions and tasks.

    Lifecycle: ``start()``, ``load()`` once, any number of ``write()``/``write_nowait()``/``flush()``,
    then ``stop()``. ``async with`` does start and stop. ``commits`` counts committed batches, so
    tests and metrics can see how well writes are being grouped.
    """

    #: True when the commit callable does blocking I/O and must run in a worker thread.
    _commit_in_thread: bool = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.commits = 0
        # Called with (records, seconds) after each batch commits (metrics).
        self.on_commit: list[Callable[[int, float], None]] = []
        self._pending: list[Record] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- engine hooks ---------------------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> None:
        """Open (creating if needed) the underlying store."""

    @abstractmethod
    async def _close(self) -> None:
        """Release the underlying store; called once after the writer has drained."""

    @abstractmethod
    async def _load(self) -> StoredState:
        """Read everything, as fresh objects the caller may mutate."""

    @abstractmethod
    def _prepare(self, batch: Batch) -> Callable[[], None]:
        """Serialize ``batch`` now (on the event loop) and return the callable that commits it.

        The callable applies the whole batch atomically or raises having applied nothing.
        """

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between start() and the beginning of stop(): writes are accepted."""
        return self._writer is not None and not self._writer.done() and not self._stopping

    async def start(self) -> None:
        """Open the store and start the writer task that owns the queue."""
        if self._writer is not None:
            raise InvalidState(f"storage {self.url} is already started")
        await self._open()
        self._stopping = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name=f"storage-writer {self.url}")
        logger.info("storage %s started", self.url)

    async def stop(self) -> None:
        """Commit everything queued, stop the writer and close the store. Safe to call twice."""
        writer, stopped = self._writer, self._stopped
        if writer is None or stopped is None:
            return
        if self._stopping:  # another stop() is draining: wait for it to finish
            await stopped.wait()
            return
        self._stopping = True
        self._wake_writer()
        try:
            await asyncio.wait({writer})  # unlike `await writer`, neither raises nor cancels it
        finally:
            if not writer.done():  # stop() itself was cancelled: abandon the queue, leave no task behind
                writer.cancel()
            elif not writer.cancelled() and writer.exception() is not None:
                logger.error("storage %s: writer failed", self.url, exc_info=writer.exception())
            self._writer = None
            try:
                await self._close()
            finally:
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

    # -- reads and writes -----------------------------------------------------------------------

    async def load(self) -> StoredState:
        """Read everything stored. Meant to be called once, after start() and before any write."""
        if not self.running:
            raise InvalidState(f"storage {self.url} is not running: call start() before load()")
        return await self._load()

    async def write(self, *records: Record) -> None:
        """Queue records and return once the batch holding them is committed.

        Raises Internal (with the engine's error as its cause) if that batch failed to commit;
        then none of the batch was applied.
        """
        if not records:
            return
        self._enqueue(records)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def write_nowait(self, *records: Record) -> None:
        """Queue records for the next batch without waiting; a failed commit is only logged."""
        if records:
            self._enqueue(records)

    async def flush(self) -> None:
        """Wait until every record queued before this call is committed (or its batch failed)."""
        writer = self._writer
        if writer is None or writer.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake_writer()
        await waiter

    def _enqueue(self, records: tuple[Record, ...]) -> None:
        if not self.running:
            raise InvalidState(f"storage {self.url} is not running: writes are accepted between start() and stop()")
        for record in records:
            if not isinstance(record, RECORD_TYPES):
                raise TypeError(f"not a storage record: {record!r}")
        self._pending.extend(records)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the writer -----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        """Commit batches until stop() asks to finish and nothing is left queued."""
        assert self._wake is not None
        try:
            while True:
                if not self._pending and not self._waiters:
                    if self._stopping:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                records, waiters = self._pending, self._waiters
                self._pending, self._waiters = [], []
                await self._commit_batch(records, waiters)
        finally:
            # Only reached with work left if the writer was cancelled: nobody will commit it now.
            if self._pending:
                logger.warning("storage %s: %d queued records dropped uncommitted", self.url, len(self._pending))
            waiters, self._pending, self._waiters = self._waiters, [], []
            _fail(waiters, lambda: Unavailable(f"storage {self.url} stopped before committing this write"))

    async def _commit_batch(self, records: list[Record], waiters: list[asyncio.Future[None]]) -> None:
        if records:
            started = time.perf_counter()
            try:
                batch = plan_batch(records)
                commit = self._prepare(batch)
                if self._commit_in_thread:
                    await asyncio.to_thread(commit)
                else:
                    commit()
            except asyncio.CancelledError:  # the commit may or may not land: the waiters cannot know
                _fail(waiters, lambda: Unavailable(f"storage {self.url} stopped while committing this write"))
                raise
            except Exception as exc:
                logger.error(
                    "storage %s: a batch of %d records failed to commit and was rolled back",
                    self.url,
                    len(records),
                    exc_info=exc,
                )
                _fail(waiters, partial(_commit_failed, self.url, exc))
                return
            self.commits += 1
            for hook in self.on_commit:
                hook(len(records), time.perf_counter() - started)
            logger.debug("storage %s: committed %d records as batch %d", self.url, batch.records, self.commits)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _commit_failed(url: str, cause: Exception) -> Internal:
    error = Internal(f"storage {url}: commit failed, nothing of the batch was written: {cause}")
    error.__cause__ = cause
    return error


def _fail(waiters: list[asyncio.Future[None]], make_error: Callable[[], Exception]) -> None:
    """Fail each waiter with its own exception: one object raised in many tasks piles up tracebacks."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(make_error())
