"""The threads an engine's blocking I/O runs in: a writer and a reader, each for the engine's life.

Why long-lived threads rather than ``asyncio.to_thread`` per commit: the executor hop, its future
and its wakeup cost the event loop more than a small commit itself, and a thread per connection
keeps each connection on one thread, so it needs no lock. Jobs run one at a time in the order
they were submitted, and each reports back with exactly one ``loop.call_soon_threadsafe``.
Reads have a thread (and connection) of their own so that paging through a large closed session
never holds up the commits of the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Called on the event loop with the job's result, or None and the exception it raised.
Done = Callable[[Any, BaseException | None], None]
Job = tuple[Callable[[], Any], Done]


class EngineThread:
    """Runs submitted jobs in order in one daemon thread and reports each to ``loop``.

    Daemon, so an engine that was never stopped cannot hold the interpreter open at exit; stop()
    ends it cleanly. A job submitted after stop() never runs: the caller must not do that.
    """

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.stopped = False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()

    def submit(self, work: Callable[[], Any], done: Done) -> None:
        self._jobs.put((work, done))

    def stop(self) -> None:
        """Let the thread finish the jobs already submitted, then end."""
        if not self.stopped:
            self.stopped = True
            self._jobs.put(None)

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = work()
            except BaseException as exc:  # reported to the loop, which owns what it means
                error = exc
            try:
                self._loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                logger.debug("%s: result of a job dropped, the event loop is closed", self._thread.name)
