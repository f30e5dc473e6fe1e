"""The executor manager: one per node; runs the executors the session manager asks for.

It registers the node over the Backend stream, starts each bound executor's service (host shim:
a local process serving flame.v1.Instance on a Unix socket), runs the tasks it is sent one after
another per executor, and reports states and outcomes back in batches.

Names are imported on first use, so ``flame up`` can start its node's warm interpreters
(:mod:`flame.executor_manager.shims._warm`) before it pays for importing the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flame._lazy import lazy_names

if TYPE_CHECKING:
    from flame.executor_manager._agent import ExecutorManager
    from flame.executor_manager._run import run_executor_manager
    from flame.executor_manager._settings import AgentSettings

_LAZY = {
    "AgentSettings": "flame.executor_manager._settings",
    "ExecutorManager": "flame.executor_manager._agent",
    "run_executor_manager": "flame.executor_manager._run",
}


__getattr__ = lazy_names(__name__, _LAZY)

__all__ = ["AgentSettings", "ExecutorManager", "run_executor_manager"]
