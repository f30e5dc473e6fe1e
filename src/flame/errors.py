"""The exception tree shared by every part of Flame.

    FlameError
    ├── InvalidArgument     bad input: the message says what was wrong and what is accepted
    ├── NotFound            no such application, session, task, executor or node
    ├── AlreadyExists       a name or id is taken
    ├── InvalidState        the object exists but is in a state that forbids the call
    ├── Unavailable         the cluster (or a service) cannot be reached
    ├── Unauthenticated     no credentials, or credentials the cluster does not accept
    ├── PermissionDenied    the caller's role may not make the call (the message names the role needed)
    ├── TaskFailed          a task ended Failed; carries the service's message
    ├── RemoteError         a flame.Executor call raised on a worker an exception that cannot come back as itself
    └── Internal            a bug or an unexpected failure

flame.protocol maps these to gRPC status codes and back, in one place.
"""

from __future__ import annotations


class FlameError(Exception):
    """Root of every error Flame raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(FlameError):
    """A request field, config key or flag has a value that is not accepted."""


class NotFound(FlameError):
    """The named object does not exist."""


class AlreadyExists(FlameError):
    """An object with that name or id exists already."""


class InvalidState(FlameError):
    """The object exists but its state forbids the operation (e.g. a closed session)."""


class Unavailable(FlameError):
    """The cluster or a service cannot be reached."""


class Unauthenticated(FlameError):
    """The call carried no credentials, or a token or certificate the cluster does not know."""


class PermissionDenied(FlameError):
    """The caller is known but its role (or ownership) does not allow the call."""


class Internal(FlameError):
    """An unexpected failure inside Flame."""


class TaskFailed(FlameError):
    """A task ended Failed; ``message`` is the reason (usually the service's error text)."""

    def __init__(self, message: str, *, session_id: str = "", task_id: str = "") -> None:
        super().__init__(message)
        self.session_id = session_id
        self.task_id = task_id


class RemoteError(FlameError):
    """A call run by flame.Executor raised, on a worker, an exception that could not be pickled back.

    ``type_name`` is the exception's type there; ``remote_traceback`` is its traceback text.
    """

    def __init__(self, message: str, *, type_name: str, remote_traceback: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback


__all__ = [
    "AlreadyExists",
    "FlameError",
    "Internal",
    "InvalidArgument",
    "InvalidState",
    "NotFound",
    "PermissionDenied",
    "RemoteError",
    "TaskFailed",
    "Unauthenticated",
    "Unavailable",
]
