"""Who may call the object cache: the cluster's credentials and roles, checked before each Flight call.

A Flight server middleware sees every call's headers before the server's method runs, so a
refused call reads nothing and stores nothing. Reading (get, info, list) is for every role but a
caller with none; writing (put, patch, delete) is for admin, user and node: services on a node
hold the node's credential, handed to them by their executor manager. The cache knows objects by
``<app>/<session>/<object>`` and not who owns a session, so it checks roles, not ownership.

With mutual TLS the TLS layer checks the client certificate against the cache's CA; pyarrow's
Flight server does not show the certificate to the server, so every certificate the CA signed
may read and write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow.flight as flight

from flame.auth import Authenticator, Identity, Role, audit, needed
from flame.errors import FlameError, PermissionDenied
from flame.protocol.flight import flight_error

_M = flight.FlightMethod
READERS = frozenset({Role.ADMIN, Role.USER, Role.NODE, Role.VIEWER})
WRITERS = frozenset({Role.ADMIN, Role.USER, Role.NODE})

#: Flight method -> the roles that may call it; a method not here is refused to everyone.
RULES: Mapping[Any, frozenset[Role]] = {
    _M.HANDSHAKE: READERS,
    _M.LIST_ACTIONS: READERS,
    _M.LIST_FLIGHTS: READERS,
    _M.GET_FLIGHT_INFO: READERS,
    _M.GET_SCHEMA: READERS,
    _M.DO_GET: READERS,
    _M.DO_PUT: WRITERS,
    _M.DO_ACTION: WRITERS,
    _M.DO_EXCHANGE: WRITERS,
}

_NAMES = {method: "".join(part.title() for part in method.name.split("_")) for method in RULES}


class CacheGuard(flight.ServerMiddlewareFactory):
    """Refuses a call whose caller the authenticator does not know, or whose role may not make it."""

    def __init__(self, authenticator: Authenticator, listener: str) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._listener = listener  # for the audit log: which of the cache's listeners refused

    def start_call(self, info: Any, headers: Mapping[str, list[str]]) -> None:
        method = f"object cache {_NAMES.get(info.method, str(info.method))}"
        identity: Identity | None = None
        try:
            identity = self._authenticator.authenticate([(k, v) for k, values in headers.items() for v in values])
            roles = RULES.get(info.method, frozenset())
            if identity.role not in roles:
                raise PermissionDenied(f"{method} needs {needed(roles)}; {identity} has not")
        except FlameError as exc:
            audit.refused(method, exc.message, identity, self._listener)
            raise flight_error(exc) from None
        return None


__all__ = ["READERS", "RULES", "WRITERS", "CacheGuard"]
