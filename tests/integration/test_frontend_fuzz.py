"""Random and malformed requests at every Frontend RPC of a live session manager.

No crash, no hang, only documented status codes, and a refused call changes nothing. The same
runs with token authentication on, each request carrying a random credential (none, a wrong one,
or a viewer's, user's or admin's token): no credential never gets past UNAUTHENTICATED, and a role
never gets a call the role table does not give it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame.config import cluster_config_from_dict
from flame.protocol import frontend_pb2, frontend_pb2_grpc, types_pb2
from flame.session_manager.auth import RULES
from flame.session_manager.server import SessionManager
from tests.integration.auth_helpers import bearer, token_of, write_tokens

SERVICE = frontend_pb2.DESCRIPTOR.services_by_name["Frontend"]
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
# A watch of a task that exists and is not finished waits for it: the test's deadline ends it.
WAITING = {"WatchTask": {grpc.StatusCode.DEADLINE_EXCEEDED}}

# Names that exist in the cluster, mixed into random text so that calls reach deep paths.
KNOWN = ["fz-app", "fz-open", "fz-closed", "1", "2", "flmping"]
text = st.one_of(st.sampled_from(KNOWN), st.text(max_size=40), st.just(""), st.just("x" * 300))
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(min_value=-2, max_value=9)
    if field.type == FieldDescriptor.TYPE_STRING:
        return text
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    low, high = INT_RANGES[field.type]
    return st.one_of(st.integers(min_value=max(low, -5), max_value=min(high, 20)), st.integers(low, high))


@st.composite
def _build(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> bytes:
    message = _class(descriptor)()
    for field in descriptor.fields:
        if depth > 3 or not draw(st.booleans()):
            continue
        strategy = _value(field, depth)
        if field.is_repeated:
            values = draw(st.lists(strategy, max_size=3))
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for raw in values:
                    getattr(message, field.name).add().MergeFromString(raw)
            else:
                getattr(message, field.name).extend(values)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).MergeFromString(draw(strategy))
        else:
            setattr(message, field.name, draw(strategy))
    return bytes(message.SerializeToString())


def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[bytes]:
    return _build(descriptor, depth)


def _class(descriptor: Descriptor) -> Any:
    module = frontend_pb2 if descriptor.file.name.endswith("frontend.proto") else types_pb2
    return getattr(module, descriptor.name)


requests = st.sampled_from(list(SERVICE.methods)).flatmap(
    lambda m: st.tuples(st.just(m.name), st.one_of(_message(m.input_type), st.binary(max_size=40)))
)
# With authentication on: who sends the request (None: no token; "wrong": a token the cluster does not know).
CREDENTIALS = [None, "wrong", "viewer", "user", "admin"]
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class ControlPlane:
    """A session manager alone on a background loop: no node registers, so nothing runs and
    the only changes to its state are those the fuzzed calls make."""

    def __init__(self, tmp: str, auth: bool = False) -> None:
        section: dict[str, Any] = {"endpoint": "http://127.0.0.1:0", "storage": "memory", "data_dir": tmp}
        if auth:
            section["auth"] = {"mode": "token", "tokens_file": str(write_tokens(Path(tmp) / "tokens.yaml"))}
        config = cluster_config_from_dict({"cluster": section})
        self.manager = SessionManager(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.manager.start(), self.loop).result(30)
        self.endpoint = f"127.0.0.1:{self.manager.port}"

    def run(self, fn: Any) -> Any:
        async def call() -> Any:
            return fn(self.manager)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.manager.shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module", params=["auth off", "auth on"])
def live(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[ControlPlane, grpc.Channel]]:
    auth = request.param == "auth on"
    cluster = ControlPlane(str(tmp_path_factory.mktemp("fuzz")), auth)
    try:
        channel = grpc.insecure_channel(cluster.endpoint)
        # the admin sets the scene; the fuzzed calls go over the plain channel with their own credentials
        setup = grpc.intercept_channel(channel, _AdminToken()) if auth else channel
        stub = frontend_pb2_grpc.FrontendStub(setup)
        spec = types_pb2.ApplicationSpec(command="/bin/true")
        stub.RegisterApplication(frontend_pb2.RegisterApplicationRequest(name="fz-app", application=spec))
        for sid in ("fz-open", "fz-closed"):
            stub.CreateSession(
                frontend_pb2.CreateSessionRequest(session_id=sid, session=types_pb2.SessionSpec(application="fz-app"))
            )
            stub.CreateTask(frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id=sid, input=b"x")))
        stub.CloseSession(frontend_pb2.CloseSessionRequest(session_id="fz-closed"))
        yield cluster, channel
        channel.close()
    finally:
        cluster.stop()


class _AdminToken(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), *(bearer(token_of("admin")) or ())]
        return continuation(details._replace(metadata=metadata), request)


def _state(cluster: ControlPlane) -> str:
    """A digest of everything a refused call must not change."""

    def dump(sm: Any) -> str:
        c = sm.controller
        parts = [repr(sorted((a.name, repr(a.spec)) for a in c.applications.values()))]
        for rec in c.sessions.values():
            parts.append(repr((rec.session, sorted(rec.tasks.items()))))
        return hashlib.sha256("".join(sorted(parts)).encode()).hexdigest()

    return str(cluster.run(dump))


def _call(channel: grpc.Channel, method: str, payload: bytes, who: str | None = "admin") -> grpc.StatusCode:
    streaming = SERVICE.methods_by_name[method].server_streaming
    path = f"/{SERVICE.full_name}/{method}"
    ident = lambda data: data  # noqa: E731 - raw bytes in and out
    token = None if who is None else "not-a-token-of-this-cluster" if who == "wrong" else token_of(who)
    metadata = bearer(token)
    try:
        if streaming:
            for _ in channel.unary_stream(path, request_serializer=ident, response_deserializer=ident)(
                payload, timeout=2, metadata=metadata
            ):
                pass
        else:
            call = channel.unary_unary(path, request_serializer=ident, response_deserializer=ident)
            call(payload, timeout=5, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests, who=st.sampled_from(CREDENTIALS))
def test_random_requests_get_documented_codes_and_refusals_change_nothing(
    live: tuple[ControlPlane, grpc.Channel], request: tuple[str, bytes], who: str | None
) -> None:
    cluster, channel = live
    method, payload = request
    auth = cluster.manager.auth.main is not None
    if not auth:
        who = None
    before = _state(cluster)
    code = _call(channel, method, payload, who)
    allowed = DOCUMENTED | WAITING.get(method, set()) | (REFUSED if auth else set())
    assert code in allowed, (method, payload, code)
    if auth and who in (None, "wrong"):
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, payload, who, code)  # no bypass
    elif auth and who not in {role.value for role in RULES[f"/{SERVICE.full_name}/{method}"]}:
        assert code == grpc.StatusCode.PERMISSION_DENIED, (method, payload, who, code)
    if code != grpc.StatusCode.OK and code not in WAITING.get(method, set()):
        assert _state(cluster) == before, (method, payload, code)
    # the server is still up and answering
    assert _call(channel, "ListApplication", b"", "viewer" if auth else None) == grpc.StatusCode.OK
