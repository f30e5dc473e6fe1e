"""The roles a caller can have, the same for every server of a cluster."""

from __future__ import annotations

import enum


class Role(str, enum.Enum):
    ADMIN = "admin"  # applications (register, update, unregister); anyone's sessions
    USER = "user"  # sessions and tasks (its own, unless cluster.auth.user_sessions is all)
    NODE = "node"  # executor managers: the Backend only (and the object cache, for their services)
    VIEWER = "viewer"  # read-only


def needed(roles: frozenset[Role]) -> str:
    """``role admin`` or ``one of the roles admin, user``, for refusal messages."""
    names = sorted(role.value for role in roles)
    if not names:
        return "a rule in the role table (this call has none and is refused to everyone)"
    return f"role {names[0]}" if len(names) == 1 else f"one of the roles {', '.join(names)}"
