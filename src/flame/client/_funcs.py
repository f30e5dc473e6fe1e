"""The wire format of flame.Executor calls, shared by the client and the flmfunc service.

A session's common data is a pickled :class:`Common`: the ``common`` object (cloudpickled) and,
for a stateful object, the object or its class with constructor arguments. A task's input is a
pickled :class:`Request`: the callable (cloudpickled once per ``submit`` or ``map`` and reused by
every chunk) or a method name, and a chunk of ``(args, kwargs)`` (cloudpickled). Its output is a
pickled :class:`Reply`: one :class:`Outcome` per item, or one :class:`RemoteFailure` for the
whole chunk when the worker could not even load it (a module it cannot import).

Nothing here does I/O.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle

from flame.errors import FlameError

FORMAT = 1
Item = tuple[tuple[Any, ...], dict[str, Any]]


class RemoteTraceback(Exception):
    """The ``__cause__`` of an exception re-raised from a worker: its text is the remote traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Common:
    format: int = FORMAT
    common: bytes | None = None  # cloudpickled common object
    stateful: bytes | None = None  # cloudpickled (object or class, args, kwargs)
    common_ref: bytes | None = None  # or: an encoded ObjectRef of the cloudpickled common object


@dataclass(frozen=True)
class Request:
    format: int
    function: bytes | None  # cloudpickled callable; None for a method of the session's stateful object
    method: str | None
    items: bytes  # cloudpickled list of (args, kwargs)
    items_ref: bytes | None = None  # or: an encoded ObjectRef of those bytes in the object cache


@dataclass(frozen=True)
class RemoteFailure:
    """An exception raised on a worker, with what is needed to raise it again on the client."""

    type_name: str
    message: str
    traceback: str
    exception: bytes | None  # cloudpickled exception, None if it could not be pickled
    missing_module: str | None = None  # set when the worker could not import a module

    @classmethod
    def of(cls, exc: BaseException, *, missing_module: str | None = None) -> RemoteFailure:
        try:
            pickled: bytes | None = bytes(cloudpickle.dumps(exc))
            pickle.loads(pickled or b"")  # refuse what would not load back
        except Exception:
            pickled = None
        return cls(
            type_name=type(exc).__qualname__,
            message=str(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            exception=pickled,
            missing_module=missing_module,
        )


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any  # the result, or a RemoteFailure


@dataclass(frozen=True)
class Reply:
    format: int
    failure: RemoteFailure | None  # the whole chunk failed
    outcomes: list[Outcome]


def encode_common(common: bytes | None, stateful: bytes | None = None, common_ref: bytes | None = None) -> bytes:
    return pickle.dumps(Common(common=common, stateful=stateful, common_ref=common_ref))


def decode_common(data: bytes | None) -> Common:
    if not data:
        return Common()
    common = pickle.loads(data)
    if not isinstance(common, Common) or common.format != FORMAT:
        raise ValueError("this session's common data was not written by flame.Executor (format mismatch)")
    return common


def pickle_items(items: list[Item]) -> bytes:
    return bytes(cloudpickle.dumps(items))


def encode_request(function: bytes | None, method: str | None, items: bytes, items_ref: bytes | None = None) -> bytes:
    """``items`` are pickled items (``pickle_items``), or b"" with ``items_ref`` naming them in the cache."""
    return pickle.dumps(Request(FORMAT, function, method, items, items_ref))


def decode_request(data: bytes | None) -> Request:
    request = pickle.loads(data or b"")
    if not isinstance(request, Request) or request.format != FORMAT:
        raise ValueError("task input was not written by flame.Executor (format mismatch)")
    return request


def encode_reply(outcomes: list[Outcome]) -> bytes:
    """Pickle the outcomes; a result that cannot be pickled becomes that item's failure."""
    try:
        return bytes(cloudpickle.dumps(Reply(FORMAT, None, outcomes)))
    except Exception:
        safe = []
        for outcome in outcomes:
            try:
                cloudpickle.dumps(outcome.value)
                safe.append(outcome)
            except Exception as exc:
                error = TypeError(f"the result ({type(outcome.value).__qualname__}) cannot be pickled: {exc}")
                safe.append(Outcome(False, RemoteFailure.of(error)))
        return bytes(cloudpickle.dumps(Reply(FORMAT, None, safe)))


def encode_failure(failure: RemoteFailure) -> bytes:
    return bytes(cloudpickle.dumps(Reply(FORMAT, failure, [])))


def decode_reply(data: bytes) -> Reply:
    reply = pickle.loads(data)
    if not isinstance(reply, Reply):
        raise ValueError("task output was not written by the flmfunc service")
    return reply


# ---- the worker's side ----------------------------------------------------------------------

_UNSET: Any = object()
_common: Any = _UNSET


def common() -> Any:
    """The ``common`` object of the flame.Executor whose call is running (loaded once per binding)."""
    if _common is _UNSET:
        raise FlameError(
            "flame.common() works only inside a function run by a flame.Executor that was given common=...; "
            "pass the object as common=obj when creating the Executor"
        )
    return _common


def set_common(value: Any) -> None:
    global _common
    _common = value


def clear_common() -> None:
    set_common(_UNSET)
