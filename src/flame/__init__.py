"""Flame for Python: elastic workloads of many short tasks on long-lived executors.

Client::

    import flame
    with flame.connect() as conn, conn.create_session("flmping") as session:
        print(session.invoke(b""))

Functions, as with concurrent.futures::

    with flame.Executor(max_workers=4) as pool:
        print(list(pool.map(pow, [2, 3], [10, 10])))

Service::

    class Echo(flame.FlameService):
        def on_task_invoke(self, context: flame.TaskContext) -> bytes | None:
            return context.input

    flame.run(Echo())

The names follow flamepy, so moving from flamepy is an import change. Importing this package
loads nothing but the errors and types: the client and the service load on first use of one of
their names, so `flame up`, a service or a CLI command pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flame._lazy import lazy_names
from flame.errors import (
    AlreadyExists,
    FlameError,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    RemoteError,
    TaskFailed,
    Unauthenticated,
    Unavailable,
)
from flame.types import ApplicationSpec, ResourceRequirement, SessionState, TaskState

if TYPE_CHECKING:
    from flame.client import (
        AsyncConnection,
        AsyncSession,
        Connection,
        Executor,
        ObjectRef,
        RemoteTraceback,
        Session,
        StatefulObject,
        close_session,
        common,
        connect,
        create_session,
        delete_objects,
        get_application,
        get_object,
        get_session,
        list_applications,
        list_executors,
        list_nodes,
        list_sessions,
        open_session,
        patch_object,
        put_object,
        register_application,
        unregister_application,
        update_object,
    )
    from flame.service import ApplicationContext, FlameService, SessionContext, TaskContext, run


def __getattr__(name: str) -> Any:
    if name in ("client", "service"):  # as when this package imported them itself
        return importlib.import_module(f"flame.{name}")
    return _resolve(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AlreadyExists",
    "ApplicationContext",
    "ApplicationSpec",
    "AsyncConnection",
    "AsyncSession",
    "Connection",
    "Executor",
    "FlameError",
    "FlameService",
    "InvalidArgument",
    "InvalidState",
    "NotFound",
    "ObjectRef",
    "PermissionDenied",
    "RemoteError",
    "RemoteTraceback",
    "ResourceRequirement",
    "Session",
    "SessionContext",
    "SessionState",
    "StatefulObject",
    "TaskContext",
    "TaskFailed",
    "TaskState",
    "Unauthenticated",
    "Unavailable",
    "close_session",
    "common",
    "connect",
    "create_session",
    "delete_objects",
    "get_application",
    "get_object",
    "get_session",
    "list_applications",
    "list_executors",
    "list_nodes",
    "list_sessions",
    "open_session",
    "patch_object",
    "put_object",
    "register_application",
    "run",
    "unregister_application",
    "update_object",
]

# Every public name that is not imported above loads on first use: the service's from
# flame.service, the rest from flame.client.
_SERVICE = ("ApplicationContext", "FlameService", "SessionContext", "TaskContext", "run")
_LAZY = {name: "flame.service" if name in _SERVICE else "flame.client" for name in __all__ if name not in globals()}
_resolve = lazy_names(__name__, _LAZY)
