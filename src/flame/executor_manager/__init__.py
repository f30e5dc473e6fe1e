"""The executor manager: one per node; runs the executors the session manager asks for.

It registers the node over the Backend stream, starts each bound executor's service (host shim:
a local process serving flame.v1.Instance on a Unix socket), runs the tasks it is sent one after
another per executor, and reports states and outcomes back in batches.
"""

from flame.executor_manager._agent import ExecutorManager
from flame.executor_manager._run import run_executor_manager
from flame.executor_manager._settings import AgentSettings

__all__ = ["AgentSettings", "ExecutorManager", "run_executor_manager"]
