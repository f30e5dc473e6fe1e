"""The client SDK: an async core (AsyncConnection, AsyncSession) and a blocking layer over it."""

from flame.client._connection import AsyncConnection
from flame.client._default import (
    close_session,
    connect,
    create_session,
    get_application,
    get_session,
    list_applications,
    list_executors,
    list_nodes,
    list_sessions,
    open_session,
    register_application,
    unregister_application,
    update_application,
)
from flame.client._executor import Executor, RemoteTraceback, StatefulObject
from flame.client._funcs import common
from flame.client._session import AsyncSession
from flame.client._sync import Connection, Session

__all__ = [
    "AsyncConnection",
    "AsyncSession",
    "Connection",
    "Executor",
    "RemoteTraceback",
    "Session",
    "StatefulObject",
    "close_session",
    "common",
    "connect",
    "create_session",
    "get_application",
    "get_session",
    "list_applications",
    "list_executors",
    "list_nodes",
    "list_sessions",
    "open_session",
    "register_application",
    "unregister_application",
    "update_application",
]
