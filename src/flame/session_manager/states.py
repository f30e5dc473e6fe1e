"""Lifecycle tables of sessions, tasks, executors and nodes.

Each lifecycle is an enum (flame.types) plus the set of allowed transitions.
``check`` raises InvalidState for anything else, so an impossible move shows up
as an error instead of silently corrupting state.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

from flame.errors import InvalidState
from flame.types import ExecutorState, NodeState, SessionState, TaskState

E = TypeVar("E", bound=IntEnum)

SESSION_TRANSITIONS: frozenset[tuple[SessionState, SessionState]] = frozenset(
    {(SessionState.OPEN, SessionState.CLOSED)}
)

TASK_TRANSITIONS: frozenset[tuple[TaskState, TaskState]] = frozenset(
    {
        (TaskState.PENDING, TaskState.RUNNING),
        (TaskState.PENDING, TaskState.CANCELLED),
        (TaskState.PENDING, TaskState.FAILED),  # e.g. the session can never get an executor
        (TaskState.RUNNING, TaskState.SUCCEED),
        (TaskState.RUNNING, TaskState.FAILED),
        (TaskState.RUNNING, TaskState.PENDING),  # its executor was lost: run it again
        (TaskState.RUNNING, TaskState.CANCELLED),  # handed back unstarted after its session closed
    }
)

_X = ExecutorState
EXECUTOR_TRANSITIONS: frozenset[tuple[ExecutorState, ExecutorState]] = frozenset(
    {
        (_X.VOID, _X.IDLE),
        (_X.VOID, _X.BINDING),  # created and bound in one message
        (_X.VOID, _X.RELEASING),
        (_X.IDLE, _X.BINDING),
        (_X.IDLE, _X.RELEASING),
        (_X.BINDING, _X.BOUND),
        (_X.BINDING, _X.IDLE),  # bind failed
        (_X.BINDING, _X.RELEASING),
        (_X.BINDING, _X.UNBINDING),  # its session closed while it was binding
        (_X.BOUND, _X.UNBINDING),
        (_X.BOUND, _X.IDLE),  # the service stopped on its own
        (_X.BOUND, _X.RELEASING),
        (_X.UNBINDING, _X.IDLE),
        (_X.UNBINDING, _X.RELEASING),
        (_X.RELEASING, _X.RELEASED),
    }
)

NODE_TRANSITIONS: frozenset[tuple[NodeState, NodeState]] = frozenset(
    {
        (NodeState.UNKNOWN, NodeState.READY),
        (NodeState.READY, NodeState.NOT_READY),
        (NodeState.NOT_READY, NodeState.READY),
        (NodeState.NOT_READY, NodeState.UNKNOWN),
    }
)


def check(table: frozenset[tuple[E, E]], current: E, new: E, what: str) -> E:
    """Return ``new`` if ``current -> new`` is allowed by ``table``, else raise InvalidState."""
    if current == new or (current, new) in table:
        return new
    raise InvalidState(f"{what} cannot go from {current.name} to {new.name}")
