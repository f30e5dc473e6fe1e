"""Object keys (``<app>/<session>/<object>``), key prefixes and do_get tickets, parsed as Flame does.

A key names one object; a prefix ``<app>/<session>`` names a session's objects (a put to a prefix
gets a generated object id) and ``<app>/*`` all of an application's objects (only for delete).
No component may be empty or contain ``..``, ``\\`` or ``/``; ``*`` is only a whole session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flame.errors import InvalidArgument

WILDCARD = "*"
_ACCEPTED = "'<app>/<session>' or '<app>/<session>/<object>' (no empty part, '..', '\\\\' or '/' inside a part)"


@dataclass(frozen=True)
class ObjectKey:
    """A parsed key or prefix; ``object_id`` None means every object under the prefix."""

    app: str
    session: str
    object_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> ObjectKey:
        """``app/session``, ``app/*`` or ``app/session/object``."""
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise InvalidArgument(f"invalid object key {text!r}: expected {_ACCEPTED}")
        for index, part in enumerate(parts):
            if not part or ".." in part or "\\" in part:
                raise InvalidArgument(f"invalid object key {text!r}: bad part {part!r}; expected {_ACCEPTED}")
            if part == WILDCARD and index != 1:
                raise InvalidArgument(f"invalid object key {text!r}: '*' is accepted only as the session")
        if len(parts) == 3 and parts[1] == WILDCARD:
            raise InvalidArgument(f"invalid object key {text!r}: the wildcard session '*' takes no object id")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def parse_full(cls, text: str) -> ObjectKey:
        """A key that names one object (``app/session/object``)."""
        key = cls.parse(text)
        if key.object_id is None:
            raise InvalidArgument(f"invalid object key {text!r}: expected '<app>/<session>/<object>'")
        return key

    @property
    def is_all_sessions(self) -> bool:
        return self.session == WILDCARD

    def with_generated_id(self) -> ObjectKey:
        return ObjectKey(self.app, self.session, str(uuid.uuid4()))

    def matches(self, key: str) -> bool:
        """Whether the full key ``key`` is this key or under this prefix."""
        if self.object_id is not None:
            return key == str(self)
        if self.is_all_sessions:
            return key.startswith(f"{self.app}/")
        return key.startswith(f"{self.app}/{self.session}/")

    def __str__(self) -> str:
        if self.object_id is None:
            return f"{self.app}/{self.session}"
        return f"{self.app}/{self.session}/{self.object_id}"


def parse_ticket(ticket: bytes) -> tuple[ObjectKey, int]:
    """A do_get ticket ``<key>:<version>`` (``<key>`` alone means version 0, the whole object)."""
    try:
        text = ticket.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("invalid ticket: not UTF-8 text; expected '<app>/<session>/<object>:<version>'") from None
    key_text, sep, version_text = text.rpartition(":")
    if not sep:
        return ObjectKey.parse_full(text), 0
    if not version_text.isdigit():
        raise InvalidArgument(
            f"invalid ticket {text!r}: version {version_text!r} is not a whole number >= 0; "
            "expected '<app>/<session>/<object>:<version>'"
        )
    return ObjectKey.parse_full(key_text), int(version_text)
