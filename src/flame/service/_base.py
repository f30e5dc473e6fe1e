"""FlameService: the base class of user services."""

from __future__ import annotations

from collections.abc import Awaitable

from flame.service._context import SessionContext, TaskContext


class FlameService:
    """Subclass and override; each method may also be ``async def``.

    The instance calls ``on_session_enter`` once when it is bound to a session (connect, load,
    warm up), then ``on_task_invoke`` for each task of that session, then ``on_session_leave``.
    Plain methods run in a worker thread, so they may block. An exception fails the call: the
    task (or the binding) fails with the exception's text.
    """

    def on_session_enter(self, context: SessionContext) -> None | Awaitable[None]:
        """Prepare for the session's tasks; ``context.common_data()`` is the session's shared data."""

    def on_task_invoke(self, context: TaskContext) -> bytes | None | Awaitable[bytes | None]:
        """Run one task and return its output."""
        raise NotImplementedError(f"{type(self).__name__} does not implement on_task_invoke")

    def on_session_leave(self) -> None | Awaitable[None]:
        """Release what on_session_enter set up."""
