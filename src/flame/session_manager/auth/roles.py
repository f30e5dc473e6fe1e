"""Which role may make which call: one table, keyed by the full gRPC method path.

A method that is not in the table is refused to everyone, so a new RPC is closed until it gets a
rule (and the table-driven test fails until it does).
"""

from __future__ import annotations

from collections.abc import Mapping

from flame.auth.roles import Role, needed

_FRONTEND = "/flame.v1.Frontend/"
_EXT = "/flame.ext.v1.FrontendExt/"
_BACKEND = "/flame.backend.v1.Backend/"

ADMIN_ONLY = frozenset({Role.ADMIN})
WRITERS = frozenset({Role.ADMIN, Role.USER})
READERS = frozenset({Role.ADMIN, Role.USER, Role.VIEWER})
NODES = frozenset({Role.NODE})

RULES: Mapping[str, frozenset[Role]] = {
    _FRONTEND + "RegisterApplication": ADMIN_ONLY,
    _FRONTEND + "UnregisterApplication": ADMIN_ONLY,
    _FRONTEND + "UpdateApplication": ADMIN_ONLY,
    _FRONTEND + "GetApplication": READERS,
    _FRONTEND + "ListApplication": READERS,
    _FRONTEND + "ListExecutor": READERS,
    _FRONTEND + "ListNodes": READERS,
    _FRONTEND + "GetNode": READERS,
    _FRONTEND + "CreateSession": WRITERS,
    _FRONTEND + "DeleteSession": WRITERS,
    _FRONTEND + "OpenSession": WRITERS,
    _FRONTEND + "CloseSession": WRITERS,
    _FRONTEND + "GetSession": READERS,
    _FRONTEND + "ListSession": READERS,
    _FRONTEND + "CreateTask": WRITERS,
    _FRONTEND + "GetTask": READERS,
    _FRONTEND + "WatchTask": READERS,
    _FRONTEND + "ListTask": READERS,
    _EXT + "SubmitTasks": WRITERS,
    _EXT + "SubmitStream": WRITERS,
    _EXT + "WatchSession": READERS,
    _EXT + "ListExecutorDetails": READERS,
    _EXT + "CancelTasks": WRITERS,
    _EXT + "SetSessionWeight": WRITERS,
    _BACKEND + "Connect": NODES,
}

__all__ = ["RULES", "Role", "needed"]
