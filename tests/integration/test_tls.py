"""A TLS cluster: flamepy 0.6.0 connects over https:// with a CA file; plaintext is refused;
executor managers must show a client certificate signed by the cluster's CA (mutual TLS)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flamepy
import grpc
import pytest
from flamepy.core.types import FlameClientTls

import flame
from flame.protocol import backend_pb2, frontend_pb2, frontend_pb2_grpc
from tests.integration.conftest import free_port, wait_for, write_service

SERVICE = """
    import flamepy

    class Upper(flamepy.FlameService):
        def on_session_enter(self, context):
            pass

        def on_task_invoke(self, context):
            return context.input.upper()

        def on_session_leave(self):
            pass

    flamepy.run(Upper())
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 / localhost signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=flame-test-ca", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "agent.key", "-out", "agent.csr",
             "-subj", "/CN=executor-manager", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "agent.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "agent.crt", "-days", "2", cwd=directory)  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    port, backend_port = free_port(), free_port()
    config = tmp_path / "flame-cluster.yaml"
    config.write_text(
        f"cluster:\n  endpoint: https://127.0.0.1:{port}\n  storage: memory\n  data_dir: {tmp_path / 'data'}\n"
        f"  tls:\n    cert_file: {cert}\n    key_file: {key}\n    ca_file: {ca}\n    backend_port: {backend_port}\n"
        f"executor_manager:\n  session_manager: https://127.0.0.1:{backend_port}\n  max_executors: 2\n"
        f"  work_dir: {tmp_path / 'em'}\n  tls:\n    ca_file: {ca}\n"
        f"    cert_file: {tmp_path / 'agent.crt'}\n    key_file: {tmp_path / 'agent.key'}\n"
    )
    logs = tmp_path / "logs.txt"
    with open(logs, "ab") as out:
        procs = [
            subprocess.Popen([sys.executable, "-m", "flame", role, "--config", str(config)], stdout=out, stderr=out)
            for role in ("session-manager", "executor-manager")
        ]
    try:
        yield f"https://127.0.0.1:{port}", ca
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_flamepy_over_https_with_ca_and_plaintext_refused(tls_cluster: tuple[str, Path], tmp_path: Path) -> None:
    endpoint, ca = tls_cluster
    conn = wait_for(lambda: _connect(endpoint, ca), timeout=30)
    assert isinstance(conn, flamepy.Connection)
    conn.register_application("upper", write_service(tmp_path, "upper", SERVICE))
    wait_for(lambda: conn.list_nodes(), timeout=30)  # the executor manager connected over TLS
    session = conn.create_session(flamepy.SessionAttributes(application="upper"))
    assert [f.result(60) for f in [session.run(b"abc"), session.run(b"xyz")]] == [b"ABC", b"XYZ"]
    conn.close_session(session.id)

    with flame.connect(endpoint, ca_file=str(ca)) as ours:  # our SDK over TLS too
        assert ours.get_session(session.id).succeed == 2

    # mutual TLS: an executor manager without a client certificate is refused
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(endpoint.removeprefix("https://"), credentials) as channel:
        connect = channel.stream_stream(
            "/flame.backend.v1.Backend/Connect",
            request_serializer=backend_pb2.AgentMessage.SerializeToString,
            response_deserializer=backend_pb2.ManagerMessage.FromString,
        )
        register = backend_pb2.AgentMessage(register=backend_pb2.RegisterNode(name="intruder"))
        with pytest.raises(grpc.RpcError) as refused:
            list(connect(iter([register]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [n.metadata.name for n in conn.list_nodes()] != ["intruder"] and len(conn.list_nodes()) == 1

    port = endpoint.rsplit(":", 1)[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = frontend_pb2_grpc.FrontendStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListApplication(frontend_pb2.ListApplicationRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def _connect(endpoint: str, ca: Path) -> flamepy.Connection | None:
    try:
        return flamepy.connect(endpoint, FlameClientTls(ca_file=str(ca)))
    except flamepy.FlameError:
        return None
