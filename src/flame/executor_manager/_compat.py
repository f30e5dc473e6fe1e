"""``TaskGroup`` on every supported Python: asyncio's on 3.11+, a small stand-in on 3.10."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")


class FallbackTaskGroup:
    """The part of ``asyncio.TaskGroup`` this package relies on, for Python 3.10.

    ``async with`` waits for every child; the first child that fails cancels the other children and
    the body, and its exception leaves the block as itself (3.10 has no ExceptionGroup). A child that
    is cancelled on its own affects nobody else.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._exiting = False
        self._cancelled_parent = False

    async def __aenter__(self) -> FallbackTaskGroup:
        self._parent = asyncio.current_task()
        return self

    def create_task(self, coro: Coroutine[Any, Any, _T], *, name: str | None = None) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_done)
        return task

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())

    def _fail(self, exc: BaseException | None) -> None:
        if self._error is None:
            self._error = exc
        for task in self._tasks:
            task.cancel()
        if not self._exiting and self._parent is not None and not self._cancelled_parent:
            self._cancelled_parent = True
            self._parent.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._exiting = True
        body_cancelled = isinstance(exc, asyncio.CancelledError)
        if exc is not None and not body_cancelled:
            self._fail(exc)
        # A cancel we sent to the body that it has not seen yet arrives at our next await: absorb it once.
        owed_cancel = self._cancelled_parent and not body_cancelled
        cancelled_from_outside = body_cancelled and not self._cancelled_parent
        if cancelled_from_outside:
            for task in self._tasks:
                task.cancel()
        while self._tasks or owed_cancel:
            try:
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                else:
                    await asyncio.sleep(0)
                    owed_cancel = False
            except asyncio.CancelledError:
                if owed_cancel:
                    owed_cancel = False
                    continue
                cancelled_from_outside = True
                for task in self._tasks:
                    task.cancel()
        if self._error is not None and self._error is not exc:
            raise self._error
        if cancelled_from_outside and not body_cancelled:
            raise asyncio.CancelledError
        # Swallow only the cancellation we caused ourselves.
        return body_cancelled and self._cancelled_parent and not cancelled_from_outside


if sys.version_info >= (3, 11):
    from asyncio import TaskGroup
else:  # pragma: no cover - exercised on Python 3.10 only
    TaskGroup = FallbackTaskGroup

__all__ = ["FallbackTaskGroup", "TaskGroup"]
