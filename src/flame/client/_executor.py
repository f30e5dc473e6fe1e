"""flame.Executor: concurrent.futures.Executor over a session of warm executors.

    with flame.Executor(max_workers=4) as pool:
        squares = list(pool.map(lambda x: x * x, range(10_000), chunksize=100))

Callables and arguments travel cloudpickled to the built-in ``flmfunc`` service (or another
application that runs it). The callable is pickled once per ``submit``/``map`` call; a chunk of
``chunksize`` items is one task. Exceptions raised remotely are raised again here, chained to a
:class:`RemoteTraceback` whose text is the worker's traceback.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import pickle
import secrets
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import cloudpickle

from flame.client import _funcs
from flame.client._funcs import RemoteFailure, RemoteTraceback
from flame.client._sync import Connection, Session
from flame.errors import InvalidArgument, InvalidState, RemoteError

T = TypeVar("T")
DEFAULT_APPLICATION = "flmfunc"
# Pickled common objects and argument chunks larger than this go through the object cache.
LARGE_OBJECT_THRESHOLD = 1024 * 1024
Chunk = list[_funcs.Item]


class Executor(concurrent.futures.Executor):
    """Run calls on a Flame cluster: ``submit``, ``map``, ``shutdown``, ``with``.

    ``application`` runs the flmfunc service (default: the built-in ``flmfunc``). ``max_workers``
    caps the executors bound to this pool's session (None: as many as the cluster gives).
    ``common`` is pickled once, sent once, and loaded once per executor binding: a function reads
    it with ``flame.common()``. A common object or a chunk of arguments whose pickle is larger than
    ``large_object_threshold`` bytes is put in the object cache (``cache_endpoint``, default as
    ``flame.client.cache_client()`` finds it) and only its ObjectRef travels with the session or task.
    ``pickle_by_value`` names modules (or gives module objects) whose
    functions and classes travel by value rather than by import, for code that exists only on the
    client. ``connection`` is an open ``flame.Connection`` to use (else one is opened to
    ``endpoint``, default as ``flame.connect()``, and closed on shutdown).
    """

    def __init__(
        self,
        application: str = DEFAULT_APPLICATION,
        max_workers: int | None = None,
        common: Any = None,
        *,
        min_workers: int = 0,
        pickle_by_value: Iterable[str | types.ModuleType] = (),
        connection: Connection | None = None,
        endpoint: str | None = None,
        cache_endpoint: str | None = None,
        large_object_threshold: int = LARGE_OBJECT_THRESHOLD,
    ) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
            raise InvalidArgument(f"max_workers must be a whole number >= 1 or None, got {max_workers!r}")
        for module in pickle_by_value:
            cloudpickle.register_pickle_by_value(_module(module))
        self._owns_connection = connection is None
        self._connection = connection if connection is not None else Connection.connect(endpoint)
        self._application = application
        self._max_workers = max_workers
        self._min_workers = min_workers
        self._cache_endpoint = cache_endpoint
        self._threshold = large_object_threshold
        self._lock = threading.Lock()
        self._outstanding: set[concurrent.futures.Future[Any]] = set()
        self._stateful: list[StatefulObject] = []
        self._shutdown = False
        try:
            self._session = self._open(common)
        except BaseException:
            if self._owns_connection:
                self._connection.close()
            raise

    @property
    def session(self) -> Session:
        """The session this pool's calls run in."""
        return self._session

    def _open(
        self, common: Any, *, stateful: bytes | None = None, workers: int | None = None, minimum: int | None = None
    ) -> Session:
        session_id = f"{self._application}-{secrets.token_hex(6)}"
        pickled = _pickle(common, "common") if common is not None else None
        ref = None
        if pickled is not None and len(pickled) > self._threshold:
            ref, pickled = self._put(session_id, pickled), None
        return self._connection.create_session(
            self._application,
            _funcs.encode_common(pickled, stateful, ref),
            session_id=session_id,
            min_instances=self._min_workers if minimum is None else minimum,
            max_instances=self._max_workers if workers is None else workers,
        )

    def _put(self, session_id: str, data: bytes) -> bytes:
        """Put ``data`` in the object cache under this application and session; its encoded ObjectRef."""
        cache = self._connection.cache_at(self._cache_endpoint)
        return cache.put_object(f"{self._application}/{session_id}", data).encode()

    # ---- concurrent.futures.Executor ----

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)``; the future gives its result or raises its exception."""
        function = _pickle_callable(fn)
        (future,) = self._submit_chunk(self._session, function, None, [(args, kwargs)], single=True)
        return future

    def map(
        self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[T]:
        """Like ``concurrent.futures.Executor.map``: results in input order; ``chunksize`` items per task."""
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise InvalidArgument(f"chunksize must be a whole number >= 1, got {chunksize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        function = _pickle_callable(fn)
        items: Iterator[_funcs.Item] = ((args, {}) for args in zip(*iterables))  # noqa: B905 (as the stdlib's map)
        futures: list[concurrent.futures.Future[list[Any]]] = []
        while chunk := list(itertools.islice(items, chunksize)):
            futures.extend(self._submit_chunk(self._session, function, None, chunk, single=False))
        return _results(futures, deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; with ``cancel_futures``, cancel the calls not finished; with ``wait``, wait for the rest.

        The session (and the connection, if this pool opened it) is closed once the calls are done;
        without ``wait`` that happens in a background thread.
        """
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            outstanding = list(self._outstanding)
        if cancel_futures:
            for future in outstanding:
                future.cancel()
        if not first:
            if wait:
                concurrent.futures.wait(outstanding)
            return
        if wait:
            self._finish(outstanding)
        else:
            threading.Thread(target=self._finish, args=(outstanding,), name="flame-executor-shutdown").start()

    def _finish(self, outstanding: list[concurrent.futures.Future[Any]]) -> None:
        concurrent.futures.wait(outstanding)
        try:
            for stateful in self._stateful:
                stateful.close()
            with contextlib.suppress(InvalidState):
                self._session.close()
        finally:
            if self._owns_connection:
                self._connection.close()

    # ---- stateful objects ----

    def stateful(self, target: Any, /, *args: Any, **kwargs: Any) -> StatefulObject:
        """A remote object: ``target`` itself, or ``target(*args, **kwargs)`` when it is a class.

        It lives in one executor binding of its own session; ``obj.method(...)`` returns a future and
        the calls run there one at a time, in the order they were made. Its state lives in that
        service process: if the process dies, a new binding starts again from ``target``.
        """
        payload = _pickle((target, args, kwargs), "the stateful object")
        with self._lock:
            self._check_open()
            session = self._open(None, stateful=payload, workers=1, minimum=1)
            name = target.__qualname__ if isinstance(target, type) else type(target).__qualname__
            stateful = StatefulObject(self, session, name)
            self._stateful.append(stateful)
        return stateful

    # ---- internals ----

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new calls after shutdown")

    def _submit_chunk(
        self, session: Session, function: bytes | None, method: str | None, chunk: Chunk, *, single: bool
    ) -> list[concurrent.futures.Future[Any]]:
        try:
            items = _funcs.pickle_items(chunk)
        except Exception as exc:
            raise InvalidArgument(
                f"the arguments cannot be pickled for the cluster: {type(exc).__name__}: {exc}"
            ) from exc
        if len(items) > self._threshold:
            data = _funcs.encode_request(function, method, b"", self._put(session.id, items))
        else:
            data = _funcs.encode_request(function, method, items)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._check_open()
            self._outstanding.add(future)
        future.add_done_callback(self._forget)
        task = session.run(data)
        task.add_done_callback(lambda done: _settle(future, done, len(chunk), single))
        future.add_done_callback(lambda mine: _cancelled(mine, task))
        return [future]

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._outstanding.discard(future)


class StatefulObject:
    """A remote object made by :meth:`Executor.stateful`: ``obj.method(*args)`` returns a future."""

    def __init__(self, executor: Executor, session: Session, name: str) -> None:
        self._executor = executor
        self._session = session
        self._name = name

    @property
    def session(self) -> Session:
        return self._session

    def __getattr__(self, method: str) -> Callable[..., concurrent.futures.Future[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            (future,) = self._executor._submit_chunk(self._session, None, method, [(args, kwargs)], single=True)
            return future

        call.__name__ = method
        return call

    def close(self) -> None:
        """Close its session (the object is gone); idempotent."""
        with contextlib.suppress(InvalidState):
            self._session.close()

    def __repr__(self) -> str:
        return f"<StatefulObject {self._name} in session {self._session.id}>"


def _cancelled(future: concurrent.futures.Future[Any], task: concurrent.futures.Future[bytes]) -> None:
    """A cancelled future: wake those waiting on it (as an executor's worker would) and cancel its task."""
    if future.cancelled():
        future.set_running_or_notify_cancel()
        task.cancel()


def _settle(
    future: concurrent.futures.Future[Any], task: concurrent.futures.Future[bytes], size: int, single: bool
) -> None:
    """Give ``future`` what the task brought back: a value (one item) or a list of outcomes (a chunk)."""
    if future.done():
        return
    try:
        if task.cancelled():
            future.cancel()
            return
        error = task.exception()
        if error is not None:
            future.set_exception(error)
            return
        reply = _funcs.decode_reply(task.result())
        failed = reply.failure is not None
        outcomes = [_funcs.Outcome(False, reply.failure)] * size if failed else reply.outcomes
        if single:
            (outcome,) = outcomes
            if outcome.ok:
                future.set_result(outcome.value)
            else:
                future.set_exception(reraise(outcome.value))
        else:
            future.set_result(outcomes)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by its owner meanwhile
    except Exception as exc:  # an undecodable reply: the future must still end
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_exception(exc)


def _results(futures: list[concurrent.futures.Future[list[Any]]], deadline: float | None) -> Iterator[Any]:
    try:
        # Reversed so that pop() takes them in order and drops each reference once used.
        futures.reverse()
        while futures:
            timeout = None if deadline is None else deadline - time.monotonic()
            outcomes = futures.pop().result(timeout)
            for outcome in outcomes:
                if not outcome.ok:
                    raise reraise(outcome.value)
                yield outcome.value
    finally:
        for future in futures:
            future.cancel()


def reraise(failure: RemoteFailure) -> BaseException:
    """The exception to raise here for a failure on a worker."""
    if failure.missing_module is not None:
        return _missing_module(failure)
    exc: BaseException | None = None
    if failure.exception is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(failure.exception)
    if not isinstance(exc, BaseException):
        exc = RemoteError(
            f"{failure.type_name}: {failure.message}",
            type_name=failure.type_name,
            remote_traceback=failure.traceback,
        )
    exc.__cause__ = RemoteTraceback(f'\n"""\nRemote traceback:\n{failure.traceback}"""')
    return exc


def _missing_module(failure: RemoteFailure) -> ModuleNotFoundError:
    name = failure.missing_module or "?"
    top = name.partition(".")[0]
    here = sys.modules.get(top)
    where = getattr(here, "__file__", None) if here is not None else None
    has = (
        f"this client imports it from {where}"
        if where
        else "this client has it"
        if here
        else "this client lacks it too"
    )
    message = (
        f"the worker cannot import module {name!r} ({failure.message}); {has}. "
        f"Ship your own pure-Python code with flame.Executor(..., pickle_by_value=[{top!r}]), "
        "or install the package where the executors run (e.g. an application with installer: python and a package url)"
    )
    error = ModuleNotFoundError(message, name=name)
    error.__cause__ = RemoteTraceback(f'\n"""\nRemote traceback:\n{failure.traceback}"""')
    return error


def _module(module: str | types.ModuleType) -> types.ModuleType:
    if isinstance(module, types.ModuleType):
        return module
    found = sys.modules.get(module)
    if found is None:
        raise InvalidArgument(f"pickle_by_value names module {module!r}, which is not imported: import it first")
    return found


def _pickle_callable(fn: Any) -> bytes:
    if not callable(fn):
        raise TypeError(f"{type(fn).__qualname__} object is not callable")
    return _pickle(fn, "the function")


def _pickle(value: Any, what: str) -> bytes:
    try:
        return bytes(cloudpickle.dumps(value))
    except Exception as exc:
        raise InvalidArgument(f"{what} cannot be pickled for the cluster: {type(exc).__name__}: {exc}") from exc


__all__ = ["Executor", "RemoteTraceback", "StatefulObject"]
