"""flamepy-style module functions on a lazily created, shared default connection."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flame.client._connection import CONNECT_TIMEOUT
from flame.client._sync import Connection, Session
from flame.types import Application, ApplicationSpec, Executor, Node, ResourceRequirement, SessionSpec

_lock = threading.Lock()
_default: Connection | None = None


def connect(
    endpoint: str | None = None,
    *,
    ca_file: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
    config: str | Path | None = None,
    token: str | None = None,
) -> Connection:
    """Connect to a Flame cluster.

    ``endpoint`` is ``http://host:port``, ``https://host:port`` or ``host:port``; it defaults to
    $FLAME_ENDPOINT, else the current context of the client config (``config``, default
    ~/.flame/flame.yaml, as flamepy reads it), else http://127.0.0.1:8080. ``ca_file`` (default
    $FLAME_CA_FILE or the context's tls.ca_file) verifies an https endpoint. ``token`` (default
    $FLAME_TOKEN, $FLAME_TOKEN_FILE, or the context's cluster.token / cluster.token_file) is sent
    as a bearer token with every call. Raises flame.errors.Unavailable when the cluster cannot be
    reached, Unauthenticated or PermissionDenied when a call is refused.
    """
    return Connection.connect(endpoint, ca_file=ca_file, timeout=timeout, config=config, token=token)


def _connection() -> Connection:
    """The default connection, created on first use (thread-safe)."""
    global _default
    with _lock:
        if _default is None or _default.closed:
            _default = connect()
        return _default


@atexit.register
def _close_default() -> None:
    """Disconnect the default connection (the next module-level call connects again)."""
    global _default
    with _lock:
        connection, _default = _default, None
    if connection is not None:
        connection.close()


def create_session(
    application: str,
    common_data: bytes | None = None,
    *,
    session_id: str | None = None,
    min_instances: int = 0,
    max_instances: int | None = None,
    priority: int = 0,
    resreq: ResourceRequirement | str | None = None,
    batch_size: int = 1,
    weight: float | None = None,
) -> Session:
    """Create a session of ``application``; ``resreq`` may be a string like "cpu=1,mem=1g";
    ``weight`` is its share within its priority tier under fair share (default 1)."""
    return _connection().create_session(
        application,
        common_data,
        session_id=session_id,
        min_instances=min_instances,
        max_instances=max_instances,
        priority=priority,
        resreq=resreq,
        batch_size=batch_size,
        weight=weight,
    )


def open_session(session_id: str, spec: SessionSpec | None = None) -> Session:
    """Open session ``session_id``; when it does not exist and ``spec`` is given, create it."""
    return _connection().open_session(session_id, spec)


def get_session(session_id: str) -> Session:
    return _connection().get_session(session_id)


def list_sessions() -> list[Session]:
    return _connection().list_sessions()


def close_session(session_id: str) -> Session:
    return _connection().close_session(session_id)


def register_application(name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
    """Register application ``name`` from an ApplicationSpec or a flamepy-style dict."""
    _connection().register_application(name, spec)


def update_application(name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
    _connection().update_application(name, spec)


def unregister_application(name: str) -> None:
    _connection().unregister_application(name)


def get_application(name: str) -> Application | None:
    """The application called ``name``, or None when there is none."""
    return _connection().get_application(name)


def list_applications() -> list[Application]:
    return _connection().list_applications()


def list_executors() -> list[Executor]:
    return _connection().list_executors()


def list_nodes() -> list[Node]:
    return _connection().list_nodes()
