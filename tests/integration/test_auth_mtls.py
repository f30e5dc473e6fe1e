"""Mutual TLS: client certificates mapped to identities (cluster.auth.mode mtls), and a flamepy
listener over https for clients that can only send a CA file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import flamepy
import grpc
import pytest
from flamepy.core.types import FlameClientTls

import flame
from flame.config import cluster_config_from_dict
from flame.config._cluster import BUILTIN_APPLICATIONS
from flame.protocol import backend_pb2, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame.session_manager.server import SessionManager
from tests.integration.auth_helpers import make_ca, make_certificate
from tests.integration.conftest import free_port


class Running:
    """A session manager alone on a background event loop."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(manager.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.manager.shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory)
    make_certificate(directory, "server", "localhost", "IP:127.0.0.1,DNS:localhost")
    make_certificate(directory, "alice", "alice")  # mapped by common name
    make_certificate(directory, "bob", "bob-laptop", "DNS:bob.example.com")  # mapped by SAN
    make_certificate(directory, "node", "node-1")
    make_certificate(directory, "mallory", "mallory")  # signed by the CA, but mapped to nothing
    return directory


@pytest.fixture(scope="module")
def mtls(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, int]]:
    flamepy_port = free_port()
    config = cluster_config_from_dict(
        {
            "cluster": {
                "endpoint": "https://127.0.0.1:0",
                "storage": "memory",
                "data_dir": str(tmp_path_factory.mktemp("data")),
                "tls": {
                    "cert_file": str(pki / "server.crt"),
                    "key_file": str(pki / "server.key"),
                    "ca_file": str(pki / "ca.crt"),
                    "backend_port": 0,
                },
                "auth": {
                    "mode": "mtls",
                    "identities": [
                        {"subject": "alice", "role": "admin"},
                        {"subject": "bob.example.com", "role": "user", "name": "bob"},
                        {"subject": "node-1", "role": "node"},
                    ],
                    "flamepy_endpoint": f"https://127.0.0.1:{flamepy_port}",
                    "flamepy_role": "viewer",
                },
            }
        }
    )
    running = Running(SessionManager(config))
    try:
        yield running, flamepy_port
    finally:
        running.stop()


def _channel(pki: Path, port: int, who: str | None) -> grpc.Channel:
    key = (pki / f"{who}.key").read_bytes() if who else None
    chain = (pki / f"{who}.crt").read_bytes() if who else None
    credentials = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(), key, chain)
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def _register(channel: grpc.Channel, name: str) -> grpc.StatusCode:
    request = frontend_pb2.RegisterApplicationRequest(name=name, application=types_pb2.ApplicationSpec(command="x"))
    try:
        frontend_pb2_grpc.FrontendStub(channel).RegisterApplication(request, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_certificates_map_to_identities_and_roles(mtls: tuple[Running, int], pki: Path) -> None:
    running, _ = mtls
    port = running.manager.port
    with _channel(pki, port, "alice") as alice:
        assert _register(alice, "by-alice") == grpc.StatusCode.OK
    with _channel(pki, port, "bob") as bob:
        assert _register(bob, "by-bob") == grpc.StatusCode.PERMISSION_DENIED  # a user
        stub = frontend_pb2_grpc.FrontendStub(bob)
        session = types_pb2.SessionSpec(application="by-alice")
        created = stub.CreateSession(frontend_pb2.CreateSessionRequest(session_id="bobs", session=session), timeout=10)
        assert created.metadata.id == "bobs"
    with _channel(pki, port, "mallory") as mallory:
        assert _register(mallory, "by-mallory") == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            frontend_pb2_grpc.FrontendStub(mallory).ListSession(frontend_pb2.ListSessionRequest(), timeout=10)
        assert "not mapped to an identity" in (info.value.details() or "")
    with _channel(pki, port, None) as anonymous:  # no certificate: the handshake itself fails
        assert _register(anonymous, "by-nobody") == grpc.StatusCode.UNAVAILABLE
    controller = running.manager.controller
    assert sorted(set(controller.applications) - set(BUILTIN_APPLICATIONS)) == ["by-alice"]
    assert controller.sessions["bobs"].session.spec.owner == "bob"


def test_only_a_node_certificate_joins(mtls: tuple[Running, int], pki: Path) -> None:
    running, _ = mtls
    register = backend_pb2.AgentMessage(register=backend_pb2.RegisterNode(name="node-1"))
    for who, expected in (("alice", grpc.StatusCode.PERMISSION_DENIED), ("node", grpc.StatusCode.OK)):
        with _channel(pki, running.manager.backend_port, who) as channel:
            connect = channel.stream_stream(
                "/flame.backend.v1.Backend/Connect",
                request_serializer=backend_pb2.AgentMessage.SerializeToString,
                response_deserializer=backend_pb2.ManagerMessage.FromString,
            )
            call = connect(iter([register]), timeout=10)
            try:
                first = next(call)
                code = grpc.StatusCode.OK if first.HasField("registered") else grpc.StatusCode.UNKNOWN
            except grpc.RpcError as exc:
                code = exc.code()
            finally:
                call.cancel()
            assert code == expected, who


def test_our_sdk_with_a_client_certificate(mtls: tuple[Running, int], pki: Path, tmp_path: Path) -> None:
    running, _ = mtls
    config = tmp_path / "flame.yaml"
    config.write_text(
        "current-context: c\ncontexts:\n  - name: c\n    cluster:\n"
        f"      endpoint: https://127.0.0.1:{running.manager.port}\n"
        f"      tls: {{ca_file: {pki / 'ca.crt'}, cert_file: {pki / 'bob.crt'}, key_file: {pki / 'bob.key'}}}\n"
    )
    with flame.connect(config=config) as bob:
        assert "bobs" in [s.id for s in bob.list_sessions()]
        with pytest.raises(flame.PermissionDenied, match="needs role admin"):
            bob.unregister_application("by-alice")


def test_flamepy_over_https_gets_the_flamepy_role(mtls: tuple[Running, int], pki: Path) -> None:
    running, flamepy_port = mtls
    conn = flamepy.connect(f"https://127.0.0.1:{flamepy_port}", FlameClientTls(ca_file=str(pki / "ca.crt")))
    assert "by-alice" in [app.name for app in conn.list_applications()]  # viewers read
    with pytest.raises(flamepy.FlameError, match="viewer"):
        conn.create_session(flamepy.SessionAttributes(application="by-alice"))
    assert sorted(running.manager.controller.sessions) == ["bobs"]
