"""The blocking API: Connection and Session run the async core on one event-loop thread.

Every Connection of a process shares one background thread with its own event loop; every call
is handed to that loop, so the number of threads depends neither on how many tasks are
outstanding nor on how many connections were opened. The loop lives as long as the process
(a forked child starts its own): grpc.aio keeps per-loop state that outlives a channel's close,
and a loop closed under it makes grpc report "Event loop is closed" on the next connection.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from flame.client._connection import CONNECT_TIMEOUT, AsyncConnection
from flame.client._object_ref import ObjectRef
from flame.client._objects import ObjectMethods
from flame.client._pipeline import TaskFuture, fail_sinks
from flame.client._session import AsyncSession
from flame.client._specs import as_bytes
from flame.errors import FlameError, InvalidState
from flame.types import (
    Application,
    ApplicationSpec,
    Event,
    Executor,
    Node,
    ResourceRequirement,
    SessionSpec,
    SessionState,
    Task,
)

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self._stopping = False
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(self.loop)
            for task in leftovers:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise InvalidState(
                "a blocking Flame call was made from the connection's own event loop thread "
                "(e.g. in a future callback); use AsyncConnection/AsyncSession there"
            )
        if self._stopping:
            coro.close()
            raise InvalidState("the connection is closed")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # loop closed
            coro.close()
            raise InvalidState("the connection is closed") from None
        return future.result()

    def call_soon(self, callback: Any, *args: Any) -> None:
        if self._stopping:
            raise InvalidState("the connection is closed")
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            raise InvalidState("the connection is closed") from None

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def usable(self) -> bool:
        """Still running, in the process that started it."""
        return not self._stopping and self.pid == os.getpid() and self._thread.is_alive()


_shared_loop: _LoopThread | None = None
_shared_loop_lock = threading.Lock()


def _client_loop() -> _LoopThread:
    """The process's client loop thread, started on first use (again in a forked child)."""
    global _shared_loop
    with _shared_loop_lock:
        if _shared_loop is None or not _shared_loop.usable:
            _shared_loop = _LoopThread("flame-client")
        return _shared_loop


@atexit.register
def _stop_client_loop() -> None:
    """At exit, let connections still open end their calls before the loop goes."""
    loop = _shared_loop
    if loop is not None and loop.usable:
        loop.stop()


class Session:
    """A session of a blocking Connection: ``run`` returns a concurrent.futures.Future, ``invoke`` waits."""

    def __init__(self, connection: Connection, session: AsyncSession) -> None:
        self._connection = connection
        self._runner = connection._runner
        self._async = session
        # Tasks submitted from user threads wait here; the loop takes them all at once,
        # so a burst of run() calls costs one wakeup of the loop thread, not one each.
        self._burst: list[tuple[bytes, TaskFuture]] = []
        self._burst_lock = threading.Lock()

    # A status snapshot, as in AsyncSession.
    @property
    def id(self) -> str:
        return self._async.id

    @property
    def application(self) -> str:
        return self._async.application

    @property
    def state(self) -> SessionState:
        return self._async.state

    @property
    def creation_time(self) -> datetime:
        return self._async.creation_time

    @property
    def completion_time(self) -> datetime | None:
        return self._async.completion_time

    @property
    def pending(self) -> int:
        return self._async.pending

    @property
    def running(self) -> int:
        return self._async.running

    @property
    def succeed(self) -> int:
        return self._async.succeed

    @property
    def failed(self) -> int:
        return self._async.failed

    @property
    def cancelled(self) -> int:
        return self._async.cancelled

    @property
    def events(self) -> list[Event]:
        return self._async.events

    @property
    def closed(self) -> bool:
        return self._async.closed

    def common_data(self) -> bytes | None:
        return self._async.common_data()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} application={self.application} state={self.state.name}>"

    def refresh(self) -> None:
        self._runner.run(self._async.refresh())

    def run(self, input_data: bytes) -> concurrent.futures.Future[bytes]:
        """Submit a task; the future (usable with wait/as_completed) gives its output or raises TaskFailed."""
        data = as_bytes(input_data, "task input")
        if self._async.closed:
            raise InvalidState(f"session {self.id} is closed; create or open another session to run tasks")
        future = TaskFuture()
        with self._burst_lock:
            self._burst.append((data, future))
            first = len(self._burst) == 1
        if first:
            try:
                self._runner.call_soon(self._submit_burst)
            except InvalidState:
                with self._burst_lock:
                    self._burst.clear()
                raise
        return future

    def _submit_burst(self) -> None:
        """On the loop thread: hand every task queued since the last burst to the session."""
        with self._burst_lock:
            burst, self._burst = self._burst, []
        try:
            self._async.submit_entries(burst)
        except FlameError as exc:
            fail_sinks([future for _, future in burst], exc)

    def invoke(self, input_data: bytes) -> bytes:
        """Run one task and return its output."""
        return self.run(input_data).result()

    def map(self, inputs: Iterable[bytes], timeout: float | None = None) -> Iterator[bytes]:
        """Submit every input at once, then yield the outputs in input order.

        A failed task raises TaskFailed when its turn comes; ``timeout`` bounds the wait for each.
        """
        futures = [self.run(data) for data in inputs]
        for future in futures:
            yield future.result(timeout)

    def close(self) -> None:
        self._runner.run(self._async.close())

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def create_task(self, input_data: bytes) -> Task:
        return self._runner.run(self._async.create_task(input_data))

    def get_task(self, task_id: str) -> Task:
        return self._runner.run(self._async.get_task(task_id))

    def list_tasks(self) -> list[Task]:
        return self._runner.run(self._async.list_tasks())

    def watch_task(self, task_id: str) -> Iterator[Task]:
        """Yield the task now and at each change, until it is Succeed, Failed or Cancelled."""
        updates = self._async.watch_task(task_id)

        async def next_update() -> Task | None:
            return await anext(updates, None)

        try:
            while (task := self._runner.run(next_update())) is not None:
                yield task
        finally:
            self._runner.run(updates.aclose())


class Connection(ObjectMethods):
    """A blocking connection to a Flame cluster; create it with ``flame.connect()``."""

    def __init__(self, runner: _LoopThread, connection: AsyncConnection) -> None:
        self._runner = runner
        self._async = connection

    @classmethod
    def connect(
        cls,
        endpoint: str | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = CONNECT_TIMEOUT,
        config: str | Path | None = None,
        token: str | None = None,
    ) -> Connection:
        runner = _client_loop()
        connect = AsyncConnection.connect(endpoint, ca_file=ca_file, timeout=timeout, config=config, token=token)
        return cls(runner, runner.run(connect))

    @property
    def endpoint(self) -> str:
        return self._async.endpoint

    @property
    def closed(self) -> bool:
        return self._async.closed

    def close(self) -> None:
        """Disconnect; sessions stay open on the cluster, their unfinished futures fail. Idempotent."""
        with contextlib.suppress(InvalidState):  # closed already, or the process is exiting
            self._runner.run(self._async.close())

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def register_application(self, name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
        self._runner.run(self._async.register_application(name, spec))

    def update_application(self, name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
        self._runner.run(self._async.update_application(name, spec))

    def unregister_application(self, name: str) -> None:
        self._runner.run(self._async.unregister_application(name))

    def get_application(self, name: str) -> Application | None:
        return self._runner.run(self._async.get_application(name))

    def list_applications(self) -> list[Application]:
        return self._runner.run(self._async.list_applications())

    def create_session(
        self,
        application: str,
        common_data: bytes | ObjectRef | None = None,
        *,
        session_id: str | None = None,
        min_instances: int = 0,
        max_instances: int | None = None,
        priority: int = 0,
        resreq: ResourceRequirement | str | None = None,
        batch_size: int = 1,
        weight: float | None = None,
    ) -> Session:
        coro = self._async.create_session(
            application,
            common_data,
            session_id=session_id,
            min_instances=min_instances,
            max_instances=max_instances,
            priority=priority,
            resreq=resreq,
            batch_size=batch_size,
            weight=weight,
        )
        return Session(self, self._runner.run(coro))

    def open_session(self, session_id: str, spec: SessionSpec | None = None) -> Session:
        return Session(self, self._runner.run(self._async.open_session(session_id, spec)))

    def get_session(self, session_id: str) -> Session:
        return Session(self, self._runner.run(self._async.get_session(session_id)))

    def list_sessions(self) -> list[Session]:
        return [Session(self, s) for s in self._runner.run(self._async.list_sessions())]

    def close_session(self, session_id: str) -> Session:
        return Session(self, self._runner.run(self._async.close_session(session_id)))

    def list_executors(self) -> list[Executor]:
        return self._runner.run(self._async.list_executors())

    def list_nodes(self) -> list[Node]:
        return self._runner.run(self._async.list_nodes())
