"""Shims run an application's service for an executor. Only the host shim (a local process) exists.

Names are imported on first use (see :mod:`flame.executor_manager`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flame._lazy import lazy_names

if TYPE_CHECKING:
    from flame.executor_manager.shims._errors import ServiceLost, ShimError
    from flame.executor_manager.shims._launch import Launch, expand, plan_launch, socket_path_for
    from flame.executor_manager.shims._stream import TaskStream
    from flame.executor_manager.shims._warm import WarmPool
    from flame.executor_manager.shims.host import HostService, describe_exit, reap_stale_services, rpc_status

_ERRORS, _LAUNCH = "flame.executor_manager.shims._errors", "flame.executor_manager.shims._launch"
_HOST = "flame.executor_manager.shims.host"
_LAZY = {
    "HostService": _HOST,
    "Launch": _LAUNCH,
    "ServiceLost": _ERRORS,
    "ShimError": _ERRORS,
    "TaskStream": "flame.executor_manager.shims._stream",
    "WarmPool": "flame.executor_manager.shims._warm",
    "describe_exit": _HOST,
    "expand": _LAUNCH,
    "plan_launch": _LAUNCH,
    "reap_stale_services": _HOST,
    "rpc_status": _HOST,
    "socket_path_for": _LAUNCH,
}


__getattr__ = lazy_names(__name__, _LAZY)

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
