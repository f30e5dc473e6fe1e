"""What a service is told about its session and tasks (flamepy's names and fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flame.types import Shim


@dataclass(frozen=True)
class ApplicationContext:
    """The application a service instance runs for.

    Fields follow flamepy (``shim`` and ``installer`` are extra and come last, so flamepy's
    positional order still works).
    """

    name: str
    image: str | None = None
    command: str | None = None
    working_directory: str | None = None
    url: str | None = None
    shim: Shim = Shim.HOST
    installer: str | None = None


@dataclass(frozen=True)
class SessionContext:
    """The session an instance is bound to; ``common_data()`` is the session's shared input."""

    session_id: str
    application: ApplicationContext
    _common_data: bytes | None = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def common_data(self) -> bytes | None:
        return self._common_data

    def common_object(self, deserializer: Any = None) -> Any:
        """The object the common data (an encoded ObjectRef, as flamepy makes it) points to.

        Fetched from the object cache once for this binding; ``deserializer(base, patches)``
        combines a patched object, as in ``get_object``.
        """
        key = "_resolved" if deserializer is None else None
        if key is not None and key in self._memo:
            return self._memo[key]
        from flame.client._objects import common_object

        value = common_object(self._common_data, deserializer)
        if key is not None:
            self._memo[key] = value
        return value


@dataclass(frozen=True)
class TaskContext:
    task_id: str
    session_id: str
    input: bytes | None = None
