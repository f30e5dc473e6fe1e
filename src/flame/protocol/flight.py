"""Flight errors of the object cache, for its server and the SDK's cache client.

pyarrow's Flight server turns a Python exception into a status whose message carries a
traceback, except for its own Flight errors. So a FlameError crosses as a Flight error with a
clean message and its class name in ``extra_info``; :func:`error_from_flight` maps it back.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight

from flame import errors

_BY_NAME: dict[str, type[errors.FlameError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.AlreadyExists,
        errors.InvalidState,
        errors.Unavailable,
        errors.Internal,
        errors.Unauthenticated,
        errors.PermissionDenied,
    )
}


def flight_error(exc: errors.FlameError) -> flight.FlightError:
    """The Flight error a server raises for ``exc``."""
    extra = type(exc).__name__.encode()
    if isinstance(exc, errors.Unavailable):
        return flight.FlightUnavailableError(exc.message, extra)
    if isinstance(exc, errors.Internal):
        return flight.FlightInternalError(exc.message, extra)
    if isinstance(exc, errors.Unauthenticated):
        return flight.FlightUnauthenticatedError(exc.message, extra)
    if isinstance(exc, errors.PermissionDenied):
        return flight.FlightUnauthorizedError(exc.message, extra)
    return flight.FlightServerError(exc.message, extra)


def error_from_flight(exc: pa.ArrowException, what: str = "") -> errors.FlameError:
    """A client-side FlameError for a failed Flight call (``what`` prefixes the message)."""
    message = str(exc).split(". Detail:")[0]
    prefix = f"{what}: " if what else ""
    extra = getattr(exc, "extra_info", None) or b""
    cls = _BY_NAME.get(extra.decode("utf-8", "replace"))
    if cls is None:
        cls = errors.Unavailable if isinstance(exc, (flight.FlightUnavailableError, OSError)) else errors.Internal
        if isinstance(exc, (flight.FlightTimedOutError,)):
            cls = errors.Unavailable
    return cls(prefix + message)
