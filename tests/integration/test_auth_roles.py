"""Token authentication on a live cluster: every RPC against every role, ownership, refusals.

A refused call gets UNAUTHENTICATED or PERMISSION_DENIED naming the role it needs, and the
cluster's state is the same afterwards.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

import flame
from flame.protocol import backend_pb2, ext_pb2, frontend_pb2
from flame.session_manager.auth import RULES
from flame.testing import LocalCluster
from tests.integration.auth_helpers import TOKENS, bearer, raw_call, state_digest, token_of, write_tokens

SERVICES = [
    frontend_pb2.DESCRIPTOR.services_by_name["Frontend"],
    ext_pb2.DESCRIPTOR.services_by_name["FrontendExt"],
    backend_pb2.DESCRIPTOR.services_by_name["Backend"],
]
METHODS = {f"/{s.full_name}/{m.name}": m for s in SERVICES for m in s.methods}
FLMPING = "${FLAME_PYTHON} -m flame.apps.flmping"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tokens = write_tokens(tmp_path_factory.mktemp("auth") / "tokens.yaml")
    with LocalCluster(executors=2, cluster={"auth": {"mode": "token", "tokens_file": str(tokens)}}) as cluster:
        with flame.connect(cluster.endpoint, token=token_of("admin")) as admin:
            admin.create_session("flmping", session_id="tbl-admin-s").run(b"").result(60)
        with flame.connect(cluster.endpoint, token=token_of("user")) as alice:
            alice.create_session("flmping", session_id="tbl-user-s").run(b"").result(60)
        yield cluster


def test_every_rpc_has_a_rule() -> None:
    """A new RPC without a rule in the role table fails here (and is refused to everyone meanwhile)."""
    assert sorted(METHODS) == sorted(RULES)


# ---- one request per RPC, in an order where each allowed call succeeds ----

Build = Callable[[Any, str, str], None]  # (request, role, the role's session id)


def _name(request: Any, role: str, sid: str) -> None:
    request.name = f"tbl-app-{role}"


def _register(request: Any, role: str, sid: str) -> None:
    _name(request, role, sid)
    request.application.command = FLMPING


def _new_session(request: Any, role: str, sid: str) -> None:
    request.session_id = f"tbl-new-{role}"


def _session(request: Any, role: str, sid: str) -> None:
    request.session_id = sid


def _task(request: Any, role: str, sid: str) -> None:
    request.session_id, request.task_id = sid, "1"


REQUESTS: dict[str, Build] = {
    "/flame.v1.Frontend/RegisterApplication": _register,
    "/flame.v1.Frontend/UpdateApplication": _register,
    "/flame.v1.Frontend/GetApplication": lambda r, role, sid: setattr(r, "name", "flmping"),
    "/flame.v1.Frontend/ListApplication": lambda r, role, sid: None,
    "/flame.v1.Frontend/ListExecutor": lambda r, role, sid: None,
    "/flame.v1.Frontend/ListNodes": lambda r, role, sid: None,
    "/flame.v1.Frontend/GetNode": lambda r, role, sid: setattr(r, "name", socket.gethostname()),  # the local node
    "/flame.v1.Frontend/CreateSession": lambda r, role, sid: (
        _new_session(r, role, sid),
        setattr(r.session, "application", "flmping"),
    ),
    "/flame.v1.Frontend/OpenSession": _session,
    "/flame.v1.Frontend/GetSession": _session,
    "/flame.v1.Frontend/ListSession": lambda r, role, sid: None,
    "/flame.v1.Frontend/CreateTask": lambda r, role, sid: setattr(r.task, "session_id", sid),
    "/flame.v1.Frontend/GetTask": _task,
    "/flame.v1.Frontend/WatchTask": _task,
    "/flame.v1.Frontend/ListTask": _session,
    "/flame.ext.v1.FrontendExt/SubmitTasks": lambda r, role, sid: (_session(r, role, sid), r.inputs.append(b"")),
    "/flame.ext.v1.FrontendExt/SubmitStream": lambda r, role, sid: (_session(r, role, sid), r.inputs.append(b"")),
    "/flame.ext.v1.FrontendExt/WatchSession": _session,
    "/flame.ext.v1.FrontendExt/CancelTasks": lambda r, role, sid: (_session(r, role, sid), r.task_ids.append("1")),
    "/flame.ext.v1.FrontendExt/SetSessionWeight": lambda r, role, sid: (
        _session(r, role, sid),
        setattr(r, "weight", 2.0),
    ),
    "/flame.ext.v1.FrontendExt/ListExecutorDetails": lambda r, role, sid: None,
    "/flame.v1.Frontend/CloseSession": _new_session,
    "/flame.v1.Frontend/DeleteSession": _new_session,
    "/flame.v1.Frontend/UnregisterApplication": _name,
    "/flame.backend.v1.Backend/Connect": lambda r, role, sid: None,  # built by _connect
}
# An allowed watch of an open session runs until the call's deadline.
STILL_RUNNING = {"/flame.ext.v1.FrontendExt/WatchSession": grpc.StatusCode.DEADLINE_EXCEEDED}


def _payload(method: MethodDescriptor, path: str, role: str, sid: str) -> bytes:
    request = message_factory.GetMessageClass(method.input_type)()
    REQUESTS[path](request, role, sid)
    return bytes(request.SerializeToString())


def _connect(channel: grpc.Channel, role: str) -> tuple[grpc.StatusCode, str]:
    """Open the Backend stream as node ``tbl-node``; OK once the session manager answers Registered."""
    connect = channel.stream_stream(
        "/flame.backend.v1.Backend/Connect",
        request_serializer=backend_pb2.AgentMessage.SerializeToString,
        response_deserializer=backend_pb2.ManagerMessage.FromString,
    )
    register = backend_pb2.AgentMessage(register=backend_pb2.RegisterNode(name="tbl-node"))
    call = connect(iter([register]), timeout=10, metadata=bearer(token_of(role)))
    try:
        first = next(call)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    finally:
        call.cancel()
    assert first.HasField("registered")
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("role", ["admin", "user", "node", "viewer"])
def test_each_role_is_allowed_exactly_its_calls(secured: LocalCluster, role: str) -> None:
    assert list(REQUESTS) != sorted(METHODS) and sorted(REQUESTS) == sorted(METHODS)  # one request per RPC
    sid = "tbl-user-s" if role == "user" else "tbl-admin-s"
    host, port = secured.endpoint.removeprefix("http://").rsplit(":", 1)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        for path in REQUESTS:
            allowed = role in {r.value for r in RULES[path]}
            before = secured.run(state_digest)
            if path.endswith("/Connect"):
                code, details = _connect(channel, role)
            else:
                method = METHODS[path]
                payload = _payload(method, path, role, sid)
                timeout = 2 if path in STILL_RUNNING else 10
                code, details = raw_call(
                    channel, path, payload, token_of(role), streaming=method.server_streaming, timeout=timeout
                )
            if allowed:
                assert code in {grpc.StatusCode.OK, STILL_RUNNING.get(path)}, (role, path, code, details)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (role, path, code, details)
                needed = sorted(r.value for r in RULES[path])
                assert all(name in details for name in needed) and "role" in details, details
                assert secured.run(state_digest) == before, (role, path)


def test_no_token_and_a_wrong_token_are_refused_and_change_nothing(secured: LocalCluster) -> None:
    before = secured.run(state_digest)
    spec = {"command": FLMPING}
    for token in (None, "not-a-token-of-this-cluster", TOKENS["alice"][1] + "x"):
        with flame.connect(secured.endpoint, token=token or None) as conn:
            with pytest.raises(flame.Unauthenticated, match="bearer token"):
                conn.register_application("intruder", spec)
            with pytest.raises(flame.Unauthenticated):
                conn.create_session("flmping", session_id="intruder-s")
            with pytest.raises(flame.Unauthenticated):
                conn.list_sessions()
    assert secured.run(state_digest) == before


def test_users_work_on_their_own_sessions(secured: LocalCluster) -> None:
    with (
        flame.connect(secured.endpoint, token=token_of("alice")) as alice,
        flame.connect(secured.endpoint, token=token_of("bob")) as bob,
        flame.connect(secured.endpoint, token=token_of("viewer")) as viewer,
        flame.connect(secured.endpoint, token=token_of("admin")) as admin,
    ):
        mine = alice.create_session("flmping", session_id="own-alice")
        assert mine.run(b"").result(60)
        assert "own-alice" not in [s.id for s in bob.list_sessions()]
        assert "own-alice" in [s.id for s in alice.list_sessions()]
        before = secured.run(state_digest)
        with pytest.raises(flame.PermissionDenied, match="belongs to 'alice'"):
            bob.get_session("own-alice")
        with pytest.raises(flame.PermissionDenied, match="role admin"):
            bob.close_session("own-alice")
        with pytest.raises(flame.PermissionDenied):
            bob.open_session("own-alice")
        with pytest.raises(flame.PermissionDenied, match="needs one of the roles admin, user"):
            viewer.close_session("own-alice")
        assert secured.run(state_digest) == before
        assert viewer.get_session("own-alice").succeed == 1  # viewers read everything
        admin.close_session("own-alice")  # admins close anyone's session
        assert alice.get_session("own-alice").state == flame.SessionState.CLOSED


def test_registrations_and_refusals_are_audited(secured: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flame.auth.audit")
    with flame.connect(secured.endpoint, token=token_of("admin")) as admin:
        admin.register_application("audited", {"command": FLMPING})
        admin.unregister_application("audited")
    with flame.connect(secured.endpoint, token=token_of("bob")) as bob, pytest.raises(flame.PermissionDenied):
        bob.register_application("audited", {"command": FLMPING})
    lines = [r.getMessage() for r in caplog.records if r.name == "flame.auth.audit"]
    assert any(
        line.startswith("application audited registered") and "by root (admin, token) from ipv" in line
        for line in lines
    ), lines
    assert any(line.startswith("application audited unregistered by root (admin, token)") for line in lines), lines
    refused = [line for line in lines if line.startswith("refused flame.v1.Frontend/RegisterApplication by bob")]
    assert refused and "needs role admin" in refused[0] and " from ipv" in refused[0], lines


def test_a_token_from_the_client_config_file(secured: LocalCluster, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_of("viewer") + "\n")
    config = tmp_path / "flame.yaml"
    config.write_text(
        "current-context: team\ncontexts:\n"
        f"  - name: team\n    cluster:\n      endpoint: {secured.endpoint}\n      token_file: {token_file}\n"
    )
    with flame.connect(config=config) as viewer:
        assert "tbl-admin-s" in [s.id for s in viewer.list_sessions()]
        with pytest.raises(flame.PermissionDenied, match="viewer"):
            viewer.create_session("flmping")
