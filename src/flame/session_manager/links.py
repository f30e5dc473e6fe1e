"""The session manager's end of one executor manager's stream.

Commands for a node accumulate in one pending ManagerMessage; the stream's writer
takes the whole message each time it wakes, so every command issued while it was
busy travels in one message (batching without timers).
"""

from __future__ import annotations

import asyncio

from flame.protocol import application_spec_to_pb, backend_pb2, resreq_to_pb
from flame.types import Application, ResourceRequirement, Session, Task


class NodeLink:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._pending = backend_pb2.ManagerMessage()
        self._has_pending = False
        self._wake = asyncio.Event()
        self.closed = False

    def _touch(self) -> backend_pb2.ManagerMessage:
        self._has_pending = True
        self._wake.set()
        return self._pending

    def registered(self, heartbeat_interval_ms: int) -> None:
        self._touch().registered.CopyFrom(
            backend_pb2.Registered(node_name=self.node_name, heartbeat_interval_ms=heartbeat_interval_ms)
        )

    def create(self, executor_id: str, resreq: ResourceRequirement) -> None:
        self._touch().create.add(executor_id=executor_id, resreq=resreq_to_pb(resreq))

    def bind(self, executor_id: str, session: Session, app: Application, task_timeout: float | None) -> None:
        self._touch().bind.add(
            executor_id=executor_id,
            session_id=session.id,
            application_name=app.name,
            application=application_spec_to_pb(app.spec),
            common_data=session.spec.common_data,
            task_timeout_ms=None if task_timeout is None else max(1, round(task_timeout * 1000)),
        )

    def run(self, executor_id: str, tasks: list[Task]) -> None:
        run = self._touch().run
        for task in tasks:
            # Fields set in place: a TaskContext built first would be copied in again (twice the cost).
            context = run.add(executor_id=executor_id).task
            context.task_id = task.id
            context.session_id = task.session_id
            if task.input is not None:
                context.input = task.input

    def unbind(self, executor_id: str) -> None:
        self._touch().unbind.add(executor_id=executor_id)

    def release(self, executor_id: str) -> None:
        self._touch().release.add(executor_id=executor_id)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_message(self) -> backend_pb2.ManagerMessage | None:
        """Wait for commands and take all of them as one message; None once the link is closed."""
        while not self._has_pending:
            if self.closed:
                return None
            await self._wake.wait()
            self._wake.clear()
        message, self._pending, self._has_pending = self._pending, backend_pb2.ManagerMessage(), False
        return message
