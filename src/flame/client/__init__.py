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
from flame.client._object_ref import ObjectRef
from flame.client._objects import (
    cache_client,
    delete_objects,
    get_object,
    patch_object,
    put_object,
    update_object,
)
from flame.client._session import AsyncSession
from flame.client._sync import Connection, Session

__all__ = [
    "AsyncConnection",
    "AsyncSession",
    "Connection",
    "Executor",
    "ObjectRef",
    "RemoteTraceback",
    "Session",
    "StatefulObject",
    "cache_client",
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
    "unregister_application",
    "update_application",
    "update_object",
]
