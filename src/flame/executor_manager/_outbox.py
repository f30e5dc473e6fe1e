"""Everything the agent has to tell the session manager, in one ordered queue.

Executors put reports and task outcomes in; the sender takes all that is ready at once and packs it
into as few AgentMessages as ordering allows. The queue outlives a connection: while the stream is
down, items wait here and go out after the agent has registered again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import TypeAlias

from flame.protocol import backend_pb2

Item: TypeAlias = "backend_pb2.ExecutorReport | backend_pb2.TaskOutcome"


def pack(items: Iterable[Item]) -> list[backend_pb2.AgentMessage]:
    """Pack items, in order, into as few messages as possible.

    Convention (the session manager relies on it): within one AgentMessage the executor reports
    happened before the task outcomes. So a report that follows an outcome starts a new message;
    a busy node that only has outcomes to send needs one message per batch.
    """
    messages: list[backend_pb2.AgentMessage] = []
    current: backend_pb2.AgentMessage | None = None
    for item in items:
        if isinstance(item, backend_pb2.TaskOutcome):
            if current is None:
                current = backend_pb2.AgentMessage()
                messages.append(current)
            current.outcomes.append(item)
        else:
            if current is None or len(current.outcomes) > 0:
                current = backend_pb2.AgentMessage()
                messages.append(current)
            current.executors.append(item)
    return messages


def unpack(messages: Iterable[backend_pb2.AgentMessage]) -> list[Item]:
    """The items of ``messages`` in their original order (the inverse of :func:`pack`)."""
    items: list[Item] = []
    for message in messages:
        items.extend(message.executors)
        items.extend(message.outcomes)
    return items


class Outbox:
    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._heartbeat = False
        self._closed = False
        self._ready = asyncio.Event()
        self._urgent = asyncio.Event()

    def put(self, item: Item, *, urgent: bool = True) -> None:
        """Queue ``item``. Not urgent: the session manager loses nothing if it waits for a batch window
        (an outcome of an executor that has more tasks queued); the sender may hold it to batch more.
        """
        self.put_many((item,), urgent=urgent)

    def put_many(self, items: Iterable[Item], *, urgent: bool = True) -> None:
        """Queue ``items`` in order; ``urgent`` as for put(), for all of them at once."""
        self._items.extend(items)
        self._ready.set()
        if urgent:
            self._urgent.set()

    @property
    def urgent(self) -> bool:
        return self._urgent.is_set()

    async def wait_urgent(self, timeout: float) -> None:
        """Return when an urgent item is queued, or after ``timeout`` seconds."""
        if not self._urgent.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), timeout)

    def request_heartbeat(self) -> None:
        self._heartbeat = True
        self._ready.set()

    def close(self) -> None:
        """No more items will come: the sender flushes what is left and stops."""
        self._closed = True
        self._ready.set()
        self._urgent.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self) -> None:
        """Return once there is something to send (or the outbox was closed)."""
        while not (self._items or self._heartbeat or self._closed):
            self._ready.clear()
            await self._ready.wait()

    def take(self) -> list[backend_pb2.AgentMessage]:
        """All that is ready, packed; a lone heartbeat when nothing else is pending."""
        messages = pack(self._items)
        self._items.clear()
        self._urgent.clear()
        if not messages and self._heartbeat:
            messages = [backend_pb2.AgentMessage(heartbeat=True)]
        self._heartbeat = False
        return messages

    def give_back(self, messages: Iterable[backend_pb2.AgentMessage]) -> None:
        """Put unsent messages back in front, in order, to go out after the next registration."""
        self._items.extendleft(reversed(unpack(messages)))
        if self._items:
            self._ready.set()
            self._urgent.set()
