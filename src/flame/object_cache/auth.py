"""Who may call the object cache: the cluster's credentials and roles, checked before each Flight call.

A Flight server middleware sees every call's headers before the server's method runs, so a
refused call reads nothing and stores nothing. Reading (get, info, list) is for every role but a
caller with none; writing (put, patch, delete) is for admin, user and node: services on a node
hold the node's credential, handed to them by their executor manager.

The cache knows objects by ``<app>/<session>/<object>``. With ``user_sessions: own`` a user is held
to its own sessions as on the Frontend (:class:`Ownership`): ``flame up`` reads who owns a session
from its session manager in the same process (:class:`LocalOwners`); a standalone cache with token
authentication asks the session manager, passing on the caller's own token
(:mod:`flame.object_cache.owners`), and refuses a user's call when it cannot ask (fail closed).

With mutual TLS the TLS layer checks the client certificate against the cache's CA; pyarrow's
Flight server does not show the certificate to the server, so every certificate the CA signed
may read and write, and a standalone cache cannot hold users to their own sessions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

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

#: The end of every refusal of another's session.
OWN_ONLY = "role user reaches its own sessions' objects only"

_NAMES = {method: "".join(part.title() for part in method.name.split("_")) for method in RULES}


class Caller(flight.ServerMiddleware):
    """Who a call was admitted as, for the methods to read (``context.get_middleware``).

    ``authorization`` is the call's own ``authorization`` header, passed on when the cache asks the
    session manager about the caller's session; ``flamepy``: the call came through the cache's
    flamepy listener, which takes no credentials.
    """

    def __init__(self, identity: Identity, authorization: str | None = None, *, flamepy: bool = False) -> None:
        super().__init__()
        self.identity = identity
        self.authorization = authorization
        self.flamepy = flamepy


#: A session's owner by session id: (whether the session exists, its owner's name).
SessionOwner = Callable[[str], tuple[bool, str | None]]


class Owners(Protocol):
    """Whether a caller (of role user) may reach the objects of a session."""

    def check(self, caller: Caller, session: str) -> bool:
        """True if the session is the caller's, False if there is no such session; else raise
        PermissionDenied saying why, or another FlameError when it cannot be told (then the call
        is refused too)."""


class LocalOwners:
    """Owners read in the cache's own process (``flame up``: its session manager's sessions)."""

    def __init__(self, owner_of: SessionOwner) -> None:
        self._owner_of = owner_of

    def check(self, caller: Caller, session: str) -> bool:
        exists, owner = self._owner_of(session)
        if exists and owner != caller.identity.name:
            whose = repr(owner) if owner else "no one (it predates authentication)"
            raise PermissionDenied(f"session {session!r} belongs to {whose}; {OWN_ONLY}")
        return exists


#: Most sessions whose user the cache remembers (the least recently used are forgotten first).
MAX_CLAIMS = 100_000


class Ownership:
    """``user_sessions: own`` on the cache: a user's calls reach only objects of its own sessions.

    A session that does not exist is the user's who wrote into it first (flame.Executor puts a
    session's common data before it creates the session); one that no longer exists stays the
    user's the cache last saw reach it. Until then it is anyone's. These claims live in the
    cache's memory, at most ``MAX_CLAIMS`` of them: a restarted cache starts without any.
    """

    def __init__(self, owners: Owners, max_claims: int = MAX_CLAIMS) -> None:
        self._owners = owners
        self._claims: OrderedDict[str, str] = OrderedDict()  # session -> the user it is known to be
        self._max_claims = max_claims
        self._lock = threading.Lock()  # Flight calls run on several threads

    def check(self, caller: Caller | None, key: ObjectKey, method: str, *, writes: bool = False) -> None:
        """Return if ``caller`` may reach ``key``; ``writes``: the call would store or delete there."""
        if caller is None or caller.identity.role != Role.USER:
            return
        if key.is_all_sessions:
            raise PermissionDenied(
                f"{method} of every session of {key.app!r} needs role admin; {caller.identity} has not"
            )
        name, session = caller.identity.name, key.session
        try:
            exists = self._owners.check(caller, session)
        except FlameError as exc:
            raise type(exc)(f"{method}: {exc.message}") from None
        with self._lock:
            claimed = self._claims.get(session)
            if exists or (claimed is None and writes):
                self._claims[session] = name
                self._claims.move_to_end(session)
                while len(self._claims) > self._max_claims:
                    self._claims.popitem(last=False)
            elif claimed is not None and claimed != name:
                raise PermissionDenied(
                    f"{method}: session {session!r} does not exist (yet, or any more) and its objects are "
                    f"{claimed!r}'s; {OWN_ONLY}"
                )

    def visible(self, caller: Caller | None, keys: Iterable[str], method: str) -> list[str]:
        """The keys among ``keys`` whose sessions ``caller`` may reach; a session that cannot be
        told about refuses the whole listing (FlameError), it is not left out quietly."""
        if caller is None or caller.identity.role != Role.USER:
            return list(keys)
        reaches: dict[str, bool] = {}
        found = []
        for text in keys:
            key = ObjectKey.parse_full(text)
            session = key.session
            if session not in reaches:
                try:
                    self.check(caller, key, method)
                    reaches[session] = True
                except PermissionDenied:
                    reaches[session] = False
            if reaches[session]:
                found.append(text)
        return found


class CacheGuard(flight.ServerMiddlewareFactory):
    """Refuses a call whose caller the authenticator does not know, or whose role may not make it."""

    def __init__(self, authenticator: Authenticator, listener: str, *, flamepy: bool = False) -> None:
        """``listener`` names it in the audit log; ``flamepy``: it is the listener without credentials."""
        super().__init__()
        self._authenticator = authenticator
        self._listener = listener
        self._flamepy = flamepy

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
        if self._flamepy:
            return Caller(identity, flamepy=True)
        authorization = headers.get("authorization")  # the authenticator refused several
        return Caller(identity, authorization[0] if authorization else None)


__all__ = [
    "MAX_CLAIMS",
    "OWN_ONLY",
    "READERS",
    "RULES",
    "WRITERS",
    "CacheGuard",
    "Caller",
    "LocalOwners",
    "Owners",
    "Ownership",
    "SessionOwner",
]
