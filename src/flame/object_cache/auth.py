"""Who may call the object cache: the cluster's credentials and roles, checked before each Flight call.

A Flight server middleware sees every call's headers before the server's method runs, so a
refused call reads nothing and stores nothing. Reading (get, info, list) is for every role but a
caller with none; writing (put, patch, delete) is for admin, user and node: services on a node
hold the node's credential, handed to them by their executor manager. The cache knows objects by
``<app>/<session>/<object>``; where it can ask who owns a session (``flame up``, beside its
session manager), a user is held to its own sessions as on the Frontend (``user_sessions: own``).

With mutual TLS the TLS layer checks the client certificate against the cache's CA; pyarrow's
Flight server does not show the certificate to the server, so every certificate the CA signed
may read and write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow.flight as flight

from flame.auth import Authenticator, Identity, Role, audit, needed
from flame.errors import FlameError, PermissionDenied
from flame.object_cache.keys import ObjectKey
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


class Caller(flight.ServerMiddleware):
    """The identity a call was admitted with, for the methods to read (``context.get_middleware``)."""

    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self.identity = identity


#: A session's owner by session id: (whether the session exists, its owner's name).
Owners = Callable[[str], tuple[bool, str | None]]


class Ownership:
    """``user_sessions: own`` on the cache: a user's calls reach only objects of its own sessions
    (or of sessions that do not exist yet: flame.Executor puts a session's common data first)."""

    def __init__(self, owners: Owners) -> None:
        self._owners = owners

    def check(self, identity: Identity | None, key: ObjectKey, method: str) -> None:
        if identity is None or identity.role != Role.USER:
            return
        if key.is_all_sessions:
            raise PermissionDenied(f"{method} of every session of {key.app!r} needs role admin; {identity} has not")
        exists, owner = self._owners(key.session)
        if exists and owner != identity.name:
            whose = repr(owner) if owner else "no one (it predates authentication)"
            raise PermissionDenied(
                f"{method}: session {key.session!r} belongs to {whose}; role user reaches its own sessions' "
                "objects only"
            )

    def visible(self, identity: Identity | None, keys: Iterable[str]) -> list[str]:
        if identity is None or identity.role != Role.USER:
            return list(keys)
        found = []
        for text in keys:
            exists, owner = self._owners(ObjectKey.parse_full(text).session)
            if not exists or owner == identity.name:
                found.append(text)
        return found


class CacheGuard(flight.ServerMiddlewareFactory):
    """Refuses a call whose caller the authenticator does not know, or whose role may not make it."""

    def __init__(self, authenticator: Authenticator, listener: str) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._listener = listener  # for the audit log: which of the cache's listeners refused

    def start_call(self, info: Any, headers: Mapping[str, list[str]]) -> Caller:
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
        return Caller(identity)


__all__ = ["READERS", "RULES", "WRITERS", "CacheGuard", "Caller", "Owners", "Ownership"]
