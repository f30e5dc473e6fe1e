"""Executor scheduling: a pure planner over snapshots, and the loop that applies it."""

from flame.session_manager.scheduler.plan import plan
from flame.session_manager.scheduler.snapshot import (
    Action,
    BindExecutor,
    CreateExecutor,
    Decision,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    SessionView,
    Snapshot,
    UnbindExecutor,
)

__all__ = [
    "Action",
    "BindExecutor",
    "CreateExecutor",
    "Decision",
    "ExecutorView",
    "NodeView",
    "ReleaseExecutor",
    "SessionView",
    "Snapshot",
    "UnbindExecutor",
    "plan",
]
