"""flmfunc: the built-in service behind :class:`flame.Executor`.

On binding it loads the session's ``common`` object once (``flame.common()`` returns it) and, for a
stateful session, creates the object whose methods the tasks call. Each task calls a cloudpickled
function (or a method of that object) on a chunk of arguments and returns one outcome per item;
an exception comes back with its traceback, and a module the worker cannot import is named.

Run it as ``python -m flame.apps.flmfunc`` under an executor manager.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import cloudpickle

from flame.client import ObjectRef, _funcs, get_object
from flame.client._funcs import Outcome, RemoteFailure
from flame.service import FlameService, SessionContext, TaskContext, run

logger = logging.getLogger(__name__)


def _load(data: bytes) -> Any:
    """Unpickle user data; a module the worker lacks becomes a failure naming it."""
    try:
        return cloudpickle.loads(data)
    except ModuleNotFoundError as exc:
        raise _MissingModule(exc) from exc


class _MissingModule(Exception):
    def __init__(self, exc: ModuleNotFoundError) -> None:
        super().__init__(str(exc))
        self.error = exc


class FlmfuncService(FlameService):
    def __init__(self) -> None:
        self._functions: dict[bytes, Any] = {}  # pickled function -> function: unpickled once
        self._object: Any = None
        self._setup_failure: RemoteFailure | None = None

    def on_session_enter(self, context: SessionContext) -> None:
        header = _funcs.decode_common(context.common_data())
        self._functions.clear()
        self._object, self._setup_failure = None, None
        try:
            if header.common_ref is not None:
                _funcs.set_common(_load(_cached(header.common_ref)))
            elif header.common is not None:
                _funcs.set_common(_load(header.common))
            if header.stateful is not None:
                target, args, kwargs = _load(header.stateful)
                self._object = target(*args, **kwargs) if inspect.isclass(target) else target
        except _MissingModule as missing:
            # Told to every task, so the client sees the module named on its future.
            self._setup_failure = RemoteFailure.of(missing.error, missing_module=missing.error.name)

    def on_task_invoke(self, context: TaskContext) -> bytes:
        request = _funcs.decode_request(context.input)
        if self._setup_failure is not None:
            return _funcs.encode_failure(self._setup_failure)
        try:
            target = self._target(request)
            items: list[_funcs.Item] = _load(_cached(request.items_ref) if request.items_ref else request.items)
        except _MissingModule as missing:
            return _funcs.encode_failure(RemoteFailure.of(missing.error, missing_module=missing.error.name))
        except Exception as exc:
            return _funcs.encode_failure(RemoteFailure.of(exc))
        outcomes = []
        for args, kwargs in items:
            try:
                outcomes.append(Outcome(True, target(*args, **kwargs)))
            except (Exception, SystemExit) as exc:
                outcomes.append(Outcome(False, RemoteFailure.of(exc, missing_module=_missing(exc))))
        return _funcs.encode_reply(outcomes)

    def _target(self, request: _funcs.Request) -> Any:
        if request.function is not None:
            function = self._functions.get(request.function)
            if function is None:
                function = _load(request.function)
                if not callable(function):
                    raise TypeError(f"{type(function).__qualname__} object is not callable")
                self._functions[request.function] = function
            return function
        if self._object is None or request.method is None:
            raise TypeError("this session has no stateful object: a method call needs Executor.stateful(...)")
        method = getattr(self._object, request.method, None)
        if method is None or not callable(method):
            raise AttributeError(f"{type(self._object).__qualname__} object has no method {request.method!r}")
        return method

    def on_session_leave(self) -> None:
        self._functions.clear()
        self._object = None
        _funcs.clear_common()


def _cached(encoded_ref: bytes) -> bytes:
    """Bytes the client put in the object cache (large common objects and arguments)."""
    data = get_object(ObjectRef.decode(encoded_ref))
    if not isinstance(data, bytes):
        raise TypeError(f"expected bytes in the object cache, found {type(data).__qualname__}")
    return data


def _missing(exc: BaseException) -> str | None:
    return exc.name if isinstance(exc, ModuleNotFoundError) else None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(FlmfuncService())


if __name__ == "__main__":
    main()
