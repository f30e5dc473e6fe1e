"""Executor scheduling: a pure planner over snapshots, its policies, and the loop that applies it."""

from flame.session_manager.scheduler.plan import Scheduler, SchedulerSettings, plan
from flame.session_manager.scheduler.policies import DEFAULT_POLICIES, POLICIES, Policy
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
    "DEFAULT_POLICIES",
    "POLICIES",
    "Action",
    "BindExecutor",
    "CreateExecutor",
    "Decision",
    "ExecutorView",
    "NodeView",
    "Policy",
    "ReleaseExecutor",
    "Scheduler",
    "SchedulerSettings",
    "SessionView",
    "Snapshot",
    "UnbindExecutor",
    "plan",
]
