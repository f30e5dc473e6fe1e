"""Session ownership: a user works on the sessions it created (unless ``user_sessions: all``).

The guard puts the caller's identity in :data:`CURRENT` for the duration of the call; the
servicers ask :class:`Access` about the session a request names. With authentication off there is
no identity and everything is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

from flame.auth.identity import Identity
from flame.auth.roles import Role
from flame.errors import PermissionDenied
from flame.types import Session

CURRENT: ContextVar[Identity | None] = ContextVar("flame_caller", default=None)


class Access:
    def __init__(self, user_sessions: str = "own") -> None:
        self.users_see_all = user_sessions == "all"

    @staticmethod
    def caller() -> Identity | None:
        return CURRENT.get()

    def owner(self) -> str | None:
        """The owner recorded on a session the caller creates."""
        identity = CURRENT.get()
        return None if identity is None else identity.name

    def check(self, session: Session) -> None:
        """Raise PermissionDenied if the caller may not use ``session`` (the role table was checked before)."""
        identity = CURRENT.get()
        if identity is None or identity.role != Role.USER or self.users_see_all:
            return
        if session.spec.owner != identity.name:
            owner = repr(session.spec.owner) if session.spec.owner else "no one (it predates authentication)"
            raise PermissionDenied(
                f"session {session.id!r} belongs to {owner}: role user works on its own sessions only; "
                "role admin is needed for another's"
            )

    def visible(self, sessions: Iterable[Session]) -> list[Session]:
        """The sessions the caller may list."""
        identity = CURRENT.get()
        if identity is None or identity.role != Role.USER or self.users_see_all:
            return list(sessions)
        return [session for session in sessions if session.spec.owner == identity.name]
