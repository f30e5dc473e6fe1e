"""Shims run an application's service for an executor. Only the host shim (a local process) exists."""

from flame.executor_manager.shims._errors import ServiceLost, ShimError
from flame.executor_manager.shims._launch import Launch, expand, plan_launch, socket_path_for
from flame.executor_manager.shims._stream import TaskStream
from flame.executor_manager.shims._warm import WarmPool
from flame.executor_manager.shims.host import HostService, describe_exit, reap_stale_services, rpc_status

__all__ = [
    "HostService",
    "Launch",
    "ServiceLost",
    "ShimError",
    "TaskStream",
    "WarmPool",
    "describe_exit",
    "expand",
    "plan_launch",
    "reap_stale_services",
    "rpc_status",
    "socket_path_for",
]
