"""Who owns a session, asked of the session manager by a standalone object cache.

``flame up`` reads its session manager's sessions in the same process
(:class:`flame.object_cache.auth.LocalOwners`). A standalone cache (``flame object-cache``) calls
the session manager's Frontend ``GetSession`` with the caller's own bearer token, so that the
session manager's own rules decide:

- OK: the session is the caller's;
- PERMISSION_DENIED: it is another's, and the call is refused;
- NOT_FOUND: it does not exist (yet), and the call goes on (flame.Executor puts a session's common
  data before it creates the session);
- anything else (unreachable, a token the session manager does not take, ...): the call is refused
  with what went wrong. The cache never lets through a call it could not ask about.

A caller of the cache's flamepy listener has no token: the cache asks through the session
manager's flamepy listener, as its identity ``flamepy``, or refuses when it has none.

Answers are kept a few seconds per (credential, session), a NOT_FOUND one only a second since the
session may be created right after, so a burst of calls costs one GetSession; while one question
is in flight the other callers asking it wait for its answer. The Flight methods run on pyarrow's
threads, so the calls are synchronous gRPC on channels made once and closed with the cache.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping

import grpc

from flame.config import Endpoint, SessionManagerAddress
from flame.errors import FlameError, Internal, InvalidArgument, PermissionDenied, Unavailable
from flame.object_cache.auth import OWN_ONLY, Caller
from flame.protocol import error_from_rpc, frontend_pb2, frontend_pb2_grpc

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 5.0  # seconds for one GetSession
MAX_ANSWERS = 4096
_OPTIONS = [("grpc.max_receive_message_length", -1)]  # a session's inline common data may be large
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Verdict(enum.Enum):
    """The session manager's answer about one session, for one caller."""

    YOURS = "yours"  # GetSession OK
    ANOTHERS = "another's"  # PERMISSION_DENIED
    ABSENT = "absent"  # NOT_FOUND: no such session (yet)


#: How long an answer is believed, in seconds.
TTL: Mapping[Verdict, float] = {Verdict.YOURS: 5.0, Verdict.ANOTHERS: 5.0, Verdict.ABSENT: 1.0}


class _Question:
    """One question in flight; the callers asking the same wait for its answer."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.verdict: Verdict | None = None
        self.error: FlameError | None = None
        self.waiting = 0  # callers waiting for it besides the one asking


class Answers:
    """Verdicts by key for their :data:`TTL`, at most ``size`` of them (the least recently used go
    first), with one question in flight per key."""

    def __init__(
        self,
        ttl: Mapping[Verdict, float] = TTL,
        size: int = MAX_ANSWERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl, self._size, self._clock = ttl, size, clock
        self._lock = threading.Lock()
        self._fresh: OrderedDict[Hashable, tuple[float, Verdict]] = OrderedDict()  # key -> (until, verdict)
        self._asking: dict[Hashable, _Question] = {}

    def get(self, key: Hashable, ask: Callable[[], Verdict], wait: float) -> Verdict:
        """The fresh verdict for ``key``, else the one ``ask()`` gives (its FlameError is raised to
        every caller waiting for it, and not kept); ``wait``: how long to wait for another's ask."""
        with self._lock:
            known = self._fresh.get(key)
            if known is not None and known[0] > self._clock():
                self._fresh.move_to_end(key)
                return known[1]
            question = self._asking.get(key)
            mine = question is None
            if question is None:
                question = self._asking[key] = _Question()
            else:
                question.waiting += 1
        if not mine:
            return self._await(question, wait)
        try:
            question.verdict = ask()
        except FlameError as exc:
            question.error = exc
            raise
        finally:
            with self._lock:
                if question.verdict is not None:
                    self._keep(key, question.verdict)
                del self._asking[key]
            question.answered.set()
        return question.verdict

    def _keep(self, key: Hashable, verdict: Verdict) -> None:
        self._fresh[key] = (self._clock() + self._ttl[verdict], verdict)
        self._fresh.move_to_end(key)
        while len(self._fresh) > self._size:
            self._fresh.popitem(last=False)

    @staticmethod
    def _await(question: _Question, wait: float) -> Verdict:
        if not question.answered.wait(wait):
            raise Unavailable(f"no answer from the session manager within {wait:g} s")
        if question.verdict is not None:
            return question.verdict
        error = question.error
        if error is None:
            raise Internal("asking the session manager failed unexpectedly (see the object cache's log)")
        raise type(error)(error.message)  # a copy: the same exception is not raised in several threads

    def waiting(self, key: Hashable) -> int:
        """How many callers wait for the question about ``key`` now in flight (0: none is)."""
        with self._lock:
            question = self._asking.get(key)
            return 0 if question is None else question.waiting

    def forget(self) -> None:
        with self._lock:
            self._fresh.clear()


class SessionManagerOwners:
    """:class:`flame.object_cache.auth.Owners` that asks the session manager at ``address``."""

    def __init__(self, address: SessionManagerAddress, ca: bytes | None, answers: Answers | None = None) -> None:
        """``ca``: the certificates that verify an https session manager (None: the system's)."""
        self._answers = answers or Answers()
        self._frontend_at = f"{address.endpoint} ({address.setting})"
        self._flamepy_at = f"{address.flamepy_endpoint} (cluster.auth.flamepy_endpoint)"
        _check_connectable(address.endpoint, self._frontend_at, "set cache.session_manager to where it is reached")
        if address.flamepy_endpoint is not None:
            _check_connectable(address.flamepy_endpoint, self._flamepy_at, "give the flamepy listener a fixed port")
        self._channels = [_channel(address.endpoint, ca)]
        self._frontend = frontend_pb2_grpc.FrontendStub(self._channels[0])
        self._flamepy: frontend_pb2_grpc.FrontendStub | None = None
        if address.flamepy_endpoint is not None:
            self._channels.append(_channel(address.flamepy_endpoint, ca))
            self._flamepy = frontend_pb2_grpc.FrontendStub(self._channels[1])
        self._unreachable = False  # for one log line when it goes away and one when it is back

    @property
    def endpoint(self) -> str:
        return self._frontend_at

    def check(self, caller: Caller, session: str) -> bool:
        if caller.flamepy:
            if self._flamepy is None:
                raise PermissionDenied(
                    f"session {session!r}: the cache cannot tell whether it is flamepy's, as the session manager has "
                    f"no flamepy listener to ask without a token (cluster.auth.flamepy_endpoint); {OWN_ONLY}"
                )
            stub, metadata, where = self._flamepy, None, self._flamepy_at
        elif caller.authorization is None:
            raise PermissionDenied(f"session {session!r}: the call has no token to ask the session manager with")
        else:
            stub, metadata, where = self._frontend, (("authorization", caller.authorization),), self._frontend_at
        key = (None if caller.flamepy else caller.authorization, session)
        verdict = self._answers.get(key, lambda: self._ask(stub, metadata, where, session), ASK_TIMEOUT + 1)
        if verdict is Verdict.ANOTHERS:
            raise PermissionDenied(f"session {session!r} is not {caller.identity.name}'s; {OWN_ONLY}")
        return verdict is Verdict.YOURS

    def _ask(
        self,
        stub: frontend_pb2_grpc.FrontendStub,
        metadata: tuple[tuple[str, str], ...] | None,
        where: str,
        session: str,
    ) -> Verdict:
        request = frontend_pb2.GetSessionRequest(session_id=session)
        try:
            stub.GetSession(request, metadata=metadata, timeout=ASK_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return self._reached(Verdict.ABSENT)
            if code == grpc.StatusCode.PERMISSION_DENIED:
                return self._reached(Verdict.ANOTHERS)
            if code in _UNREACHABLE and not self._unreachable:
                self._unreachable = True
                logger.warning(
                    "cannot reach the session manager at %s: users' session objects are refused until it answers",
                    where,
                )
            question = f"could not ask the session manager at {where} whether session {session!r} is yours"
            raise error_from_rpc(exc, question) from None
        return self._reached(Verdict.YOURS)

    def _reached(self, verdict: Verdict) -> Verdict:
        if self._unreachable:
            self._unreachable = False
            logger.info("the session manager answers again")
        return verdict

    def forget(self) -> None:
        """Drop every kept answer (the cache's tokens were reloaded)."""
        self._answers.forget()

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def _check_connectable(endpoint: Endpoint, where: str, fix: str) -> None:
    if endpoint.port == 0:
        raise InvalidArgument(
            f"the object cache cannot ask the session manager at {where} who owns a session: port 0 is not an "
            f"address to connect to; {fix}"
        )


def _channel(endpoint: Endpoint, ca: bytes | None) -> grpc.Channel:
    if endpoint.tls:
        return grpc.secure_channel(endpoint.address, grpc.ssl_channel_credentials(root_certificates=ca), _OPTIONS)
    return grpc.insecure_channel(endpoint.address, _OPTIONS)
