"""FlameError <-> gRPC status, both directions, in one place."""

from __future__ import annotations

from typing import NoReturn

import grpc

from flame import errors

_TO_STATUS: dict[type[errors.FlameError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.InvalidState: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.TaskFailed: grpc.StatusCode.ABORTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}
_FROM_STATUS: dict[grpc.StatusCode, type[errors.FlameError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.InvalidState,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.TaskFailed,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}


def status_for(exc: errors.FlameError) -> grpc.StatusCode:
    """The gRPC status code that carries ``exc`` over the wire."""
    for cls in type(exc).__mro__:
        if cls in _TO_STATUS:
            return _TO_STATUS[cls]
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.FlameError) -> NoReturn:
    """End an RPC with the status and message of ``exc``."""
    await context.abort(status_for(exc), exc.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def error_from_status(code: int, details: str, what: str = "") -> errors.FlameError:
    """The FlameError for a status carried in a message (``code`` as its number, e.g. SubmitReply.code)."""
    status = _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    message = details or str(status)
    return _FROM_STATUS.get(status, errors.Internal)(f"{what}: {message}" if what else message)


_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def error_from_rpc(exc: grpc.RpcError, what: str = "") -> errors.FlameError:
    """The FlameError for a failed call; ``what`` names the operation for the message."""
    # Both grpc.Call errors and grpc.aio.AioRpcError carry code() and details().
    code_of = getattr(exc, "code", None)
    details_of = getattr(exc, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = (details_of() if callable(details_of) else None) or str(code)
    message = f"{what}: {details}" if what else details
    return _FROM_STATUS.get(code, errors.Internal)(message)
