"""The audit log: one line per application change and per refused call (who, what, from where).

Lines go to the ``flame.auth.audit`` logger (the session manager's and the object cache's), so
an operator can route them to a file of their own with standard logging configuration.
"""

from __future__ import annotations

import logging

from flame.auth.identity import Identity

logger = logging.getLogger(__name__)


def _who(identity: Identity | None) -> str:
    return "anonymous (authentication off)" if identity is None else str(identity)


def application_changed(action: str, name: str, detail: str, identity: Identity | None, peer: str) -> None:
    """``action``: registered, updated or unregistered."""
    logger.info("application %s %s%s by %s from %s", name, action, detail, _who(identity), peer)


def refused(method: str, reason: str, identity: Identity | None, peer: str, *, authenticating: bool = True) -> None:
    """``authenticating``: whether the cluster checks callers (else an unknown caller is simply anonymous)."""
    unknown = "an unauthenticated caller" if authenticating else _who(None)
    who = unknown if identity is None else str(identity)
    logger.warning("refused %s by %s from %s: %s", method.lstrip("/"), who, peer, reason)
