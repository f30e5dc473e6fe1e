"""AsyncSession: one session of the cluster, as seen by an async client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING

import grpc

from flame.client._pipeline import Entry, TaskPipeline
from flame.client._specs import as_bytes
from flame.errors import FlameError, InvalidState
from flame.protocol import frontend_pb2, task_from_pb, types_pb2
from flame.types import Event, SessionState, Task
from flame.types import Session as SessionInfo

if TYPE_CHECKING:
    from flame.client._connection import AsyncConnection

CLOSE_TIMEOUT = 30.0  # how long close() waits for the results of tasks still running


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class AsyncSession:
    """A session: submit tasks with ``run``/``submit``, then ``close`` (or use ``async with``).

    The status fields (state, pending, running, ...) are a snapshot taken when the object was
    returned; ``refresh()`` takes a new one.
    """

    def __init__(self, connection: AsyncConnection, info: SessionInfo) -> None:
        self._connection = connection
        self._info = info
        self._pipeline: TaskPipeline | None = None
        self._closing = False

    # -- status snapshot ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def application(self) -> str:
        return self._info.spec.application

    @property
    def state(self) -> SessionState:
        return self._info.state

    @property
    def creation_time(self) -> datetime:
        return datetime.fromtimestamp(self._info.creation_time / 1000, tz=timezone.utc)

    @property
    def completion_time(self) -> datetime | None:
        return _datetime(self._info.completion_time)

    @property
    def pending(self) -> int:
        return self._info.pending

    @property
    def running(self) -> int:
        return self._info.running

    @property
    def succeed(self) -> int:
        return self._info.succeed

    @property
    def failed(self) -> int:
        return self._info.failed

    @property
    def cancelled(self) -> int:
        return self._info.cancelled

    @property
    def events(self) -> list[Event]:
        return list(self._info.events)

    @property
    def closed(self) -> bool:
        return self._closing or self._info.state == SessionState.CLOSED

    def common_data(self) -> bytes | None:
        return self._info.spec.common_data

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} application={self.application} state={self.state.name}>"

    async def refresh(self) -> None:
        """Reload the status fields from the cluster."""
        self._info = await self._connection._get_session_info(self.id)

    # -- tasks --------------------------------------------------------------------------------

    def submit(self, input_data: bytes) -> asyncio.Future[bytes]:
        """Queue a task; the future gives its output or raises TaskFailed. Call inside the event loop."""
        data = as_bytes(input_data, "task input")
        return self._open_pipeline().submit(data)

    def submit_entries(self, entries: Iterable[Entry]) -> None:
        """Queue already-checked inputs whose outcomes go to the given futures (the blocking API's path)."""
        self._open_pipeline().submit_entries(entries)

    def _open_pipeline(self) -> TaskPipeline:
        if self.closed:
            raise InvalidState(f"session {self.id} is closed; create or open another session to run tasks")
        if self._pipeline is None:
            self._connection._track(self)
            info = self._info
            finished = info.succeed + info.failed + info.cancelled
            self._pipeline = TaskPipeline(
                self.id, self._connection._ext, self._connection._map_error, replay_is_empty=finished == 0
            )
        return self._pipeline

    async def map(self, inputs: Iterable[bytes]) -> AsyncIterator[bytes]:
        """Submit every input at once, then yield the outputs in input order."""
        futures = [self.submit(data) for data in inputs]
        for future in futures:
            yield await future

    async def run(self, input_data: bytes) -> bytes:
        """Run one task and return its output (b"" when the service returned nothing)."""
        return await self.submit(input_data)

    async def close(self) -> None:
        """Close the session; tasks without a result by then fail (the cluster cancels them)."""
        if self._closing:
            return
        self._closing = True
        pipeline = self._pipeline
        try:
            if pipeline is not None:
                await pipeline.drain()
            self._info = await self._connection._close_session_rpc(self.id)
            if pipeline is not None:
                await pipeline.finish(CLOSE_TIMEOUT)
        finally:
            if pipeline is not None:
                await pipeline.abort(InvalidState(f"session {self.id} was closed before the task completed"))
            self._connection._untrack(self)

    async def _detach(self, error: FlameError) -> None:
        """Stop this object's background work without closing the session (connection closing)."""
        self._closing = True
        if self._pipeline is not None:
            await self._pipeline.abort(error)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- one task at a time, as flamepy offers it ---------------------------------------------

    async def create_task(self, input_data: bytes) -> Task:
        """Create one task without waiting for it (Frontend.CreateTask); see ``get_task``."""
        data = as_bytes(input_data, "task input")
        spec = types_pb2.TaskSpec(session_id=self.id, input=data)
        message = await self._connection._call(
            f"create task in session {self.id}",
            self._connection._frontend.CreateTask,
            frontend_pb2.CreateTaskRequest(task=spec),
        )
        return task_from_pb(message)

    async def get_task(self, task_id: str) -> Task:
        request = frontend_pb2.GetTaskRequest(task_id=task_id, session_id=self.id)
        message = await self._connection._call(
            f"get task {task_id} of session {self.id}", self._connection._frontend.GetTask, request
        )
        return task_from_pb(message)

    async def list_tasks(self) -> list[Task]:
        self._connection._check_open()
        call = self._connection._frontend.ListTask(frontend_pb2.ListTaskRequest(session_id=self.id))
        try:
            return [task_from_pb(message) async for message in call]
        except grpc.RpcError as exc:
            raise self._connection._map_error(exc, f"list tasks of session {self.id}") from exc

    async def watch_task(self, task_id: str) -> AsyncGenerator[Task, None]:
        """Yield the task now and at each change, until it is Succeed, Failed or Cancelled."""
        self._connection._check_open()
        request = frontend_pb2.WatchTaskRequest(task_id=task_id, session_id=self.id)
        call = self._connection._frontend.WatchTask(request)
        try:
            async for message in call:
                yield task_from_pb(message)
        except grpc.RpcError as exc:
            raise self._connection._map_error(exc, f"watch task {task_id} of session {self.id}") from exc
        finally:
            call.cancel()
