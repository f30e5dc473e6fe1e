"""Authentication across real processes: SIGHUP reloads, executor managers' tokens, the flamepy
listener with an unmodified flamepy 0.6.0 client, and the command allowlist on the node."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flamepy
import grpc
import pytest

import flame
from flame.protocol import backend_pb2, ext_pb2, ext_pb2_grpc, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame.testing import LocalCluster
from tests.integration.auth_helpers import bearer, token_of, write_tokens
from tests.integration.conftest import free_port, wait_for

FLMPING = "${FLAME_PYTHON} -m flame.apps.flmping"


class Processes:
    """Flame server processes started from one config file; their output goes to one log file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.log = tmp_path / "logs.txt"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "flame", *args], stdout=out, stderr=out, env=env)
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


def _token_cluster(tmp_path: Path, extra: str = "") -> tuple[Path, str]:
    tokens = write_tokens(tmp_path / "tokens.yaml")
    port = free_port()
    config = tmp_path / "flame-cluster.yaml"
    config.write_text(
        f"cluster:\n  endpoint: http://127.0.0.1:{port}\n  storage: memory\n  data_dir: {tmp_path / 'data'}\n"
        f"  auth:\n    mode: token\n    tokens_file: {tokens}\n{extra}"
    )
    return config, f"http://127.0.0.1:{port}"


def _connect(endpoint: str, token: str) -> flame.Connection | None:
    try:
        conn = flame.connect(endpoint, token=token, timeout=1)
    except flame.Unavailable:
        return None
    return conn


def test_sighup_reload_revokes_a_token_and_accepts_a_new_one(processes: Processes, tmp_path: Path) -> None:
    config, endpoint = _token_cluster(tmp_path)
    manager = processes.start("session-manager", "--config", str(config))
    alice = wait_for(lambda: _connect(endpoint, token_of("alice")), timeout=30)
    assert isinstance(alice, flame.Connection)
    assert alice.list_sessions() == []
    with flame.connect(endpoint, token=token_of("bob")) as bob:
        bob.list_sessions()
    # alice watches a session of hers (no node: its task stays pending)
    channel = grpc.insecure_channel(endpoint.removeprefix("http://"))
    frontend, ext = frontend_pb2_grpc.FrontendStub(channel), ext_pb2_grpc.FrontendExtStub(channel)
    spec = types_pb2.SessionSpec(application="flmping")
    mine = bearer(token_of("alice"))
    frontend.CreateSession(frontend_pb2.CreateSessionRequest(session_id="alices", session=spec), metadata=mine)
    ext.SubmitTasks(ext_pb2.SubmitTasksRequest(session_id="alices", inputs=[b""]), metadata=mine)
    watch = ext.WatchSession(ext_pb2.WatchSessionRequest(session_id="alices"), metadata=mine, timeout=60)
    watch.initial_metadata()

    write_tokens(tmp_path / "tokens.yaml", ["root", "bob"])  # alice's token is revoked
    manager.send_signal(signal.SIGHUP)

    def refused() -> bool:
        try:
            alice.list_applications()
        except flame.Unauthenticated:
            return True
        return False

    wait_for(refused, timeout=20)
    with pytest.raises(flame.Unauthenticated, match="not accepted"):
        alice.create_session("flmping", session_id="after-revocation")
    with flame.connect(endpoint, token=token_of("admin")) as admin:
        assert [s.id for s in admin.list_sessions()] == ["alices"]  # the refused call created nothing
        admin.close_session("alices")  # cancels alice's task: her open watch would be told, but
    with pytest.raises(grpc.RpcError) as cut:  # her stream is checked again after the reload
        next(watch)
    assert cut.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    with flame.connect(endpoint, token=token_of("bob")) as bob:
        bob.list_sessions()  # the others' tokens still work
    alice.close()

    (tmp_path / "tokens.yaml").write_text("tokens: [{name: x, role: admin, token: short}]\n")
    manager.send_signal(signal.SIGHUP)  # a bad file is refused and the previous tokens stay
    wait_for(lambda: "tokens not reloaded" in processes.output(), timeout=20)
    with flame.connect(endpoint, token=token_of("bob")) as bob:
        bob.list_sessions()
    assert "short" not in processes.output()  # a token is never echoed


def test_an_executor_manager_needs_a_node_token(processes: Processes, tmp_path: Path) -> None:
    config, endpoint = _token_cluster(tmp_path)
    processes.start("session-manager", "--config", str(config))
    admin = wait_for(lambda: _connect(endpoint, token_of("admin")), timeout=30)
    assert isinstance(admin, flame.Connection)
    with admin:
        user_token = tmp_path / "user.token"
        user_token.write_text(token_of("user"))
        common = ["executor-manager", "--session-manager", endpoint, "--max-executors", "1"]
        processes.start(*common, "--node-name", "as-user", "--work-dir", str(tmp_path / "u"),
                        "--token-file", str(user_token))  # fmt: skip
        wait_for(lambda: "PERMISSION_DENIED" in processes.output(), timeout=30)
        assert "Backend/Connect needs role node" in processes.output()
        assert [n.name for n in admin.list_nodes()] == []

        node_token = tmp_path / "node.token"
        node_token.write_text(token_of("node"))
        processes.start(*common, "--node-name", "as-node", "--work-dir", str(tmp_path / "n"),
                        "--token-file", str(node_token))  # fmt: skip
        wait_for(lambda: [n.name for n in admin.list_nodes()] == ["as-node"], timeout=30)
        session = admin.create_session("flmping", session_id="on-the-node")
        assert json.loads(session.run(b"").result(60))["session"] == "on-the-node"

    # no token at all: refused as well
    with grpc.insecure_channel(endpoint.removeprefix("http://")) as channel:
        connect = channel.stream_stream(
            "/flame.backend.v1.Backend/Connect",
            request_serializer=backend_pb2.AgentMessage.SerializeToString,
            response_deserializer=backend_pb2.ManagerMessage.FromString,
        )
        register = backend_pb2.AgentMessage(register=backend_pb2.RegisterNode(name="intruder"))
        for metadata in (None, bearer(token_of("viewer"))):
            with pytest.raises(grpc.RpcError) as info:
                list(connect(iter([register]), timeout=10, metadata=metadata))
            assert info.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def test_flamepy_listener_serves_unmodified_flamepy_with_its_role(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.yaml")
    flamepy_port = free_port()
    auth = {
        "mode": "token",
        "tokens_file": str(tokens),
        "flamepy_endpoint": f"http://127.0.0.1:{flamepy_port}",
        "flamepy_role": "user",
    }
    with LocalCluster(executors=2, cluster={"auth": auth}) as cluster:
        assert cluster.cluster is not None
        assert cluster.cluster.session_manager.flamepy_port == flamepy_port
        conn = flamepy.connect(f"http://127.0.0.1:{flamepy_port}")
        session = conn.create_session(flamepy.SessionAttributes(application="flmping"))
        outputs = [json.loads(f.result(60)) for f in [session.run(b""), session.run(b'{"duration_ms": 1}')]]
        assert [o["session"] for o in outputs] == [session.id, session.id]
        assert conn.get_session(session.id).succeed == 2
        # its role is enforced: a user may not register applications
        with pytest.raises(flamepy.FlameError, match="needs role admin"):
            conn.register_application("from-flamepy", {"command": FLMPING})
        conn.close_session(session.id)
        with flame.connect(cluster.endpoint, token=token_of("admin")) as admin:
            assert admin.get_application("from-flamepy") is None
            # the sessions it made belong to the flamepy identity: a user with a token sees none
            assert session.id in [s.id for s in admin.list_sessions()]
        with flame.connect(cluster.endpoint, token=token_of("alice")) as alice:
            assert session.id not in [s.id for s in alice.list_sessions()]
        # the main port still wants a token from flamepy
        with pytest.raises(flamepy.FlameError):
            flamepy.connect(cluster.endpoint).list_sessions()
        # and the flamepy listener does not serve the Backend
        with grpc.insecure_channel(f"127.0.0.1:{flamepy_port}") as channel:
            connect = channel.stream_stream("/flame.backend.v1.Backend/Connect")
            with pytest.raises(grpc.RpcError) as info:
                list(connect(iter([b""]), timeout=10))
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_command_outside_the_allowlist_is_refused_at_registration_and_on_the_node(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    allowed = [FLMPING, f"{sys.executable} -c pass"]
    data_dir = tmp_path / "data"
    cluster_section = {"applications": {"allowed_commands": allowed}}
    forbidden = {"command": "/bin/sh", "arguments": ["-c", f"touch {marker}"]}
    sqlite = {"data_dir": data_dir, "storage": "sqlite://flame.db", "cluster": cluster_section}
    with LocalCluster(executors=1, **sqlite) as first, flame.connect(first.endpoint) as conn:
        with pytest.raises(flame.PermissionDenied, match=r"not allowed by cluster\.applications\.allowed_commands"):
            conn.register_application("forbidden", forbidden)
        assert conn.get_application("forbidden") is None
        conn.register_application("innocent", {"command": sys.executable, "arguments": ["-c", "pass"]})
        with pytest.raises(flame.PermissionDenied):  # and an update cannot smuggle it in either
            conn.update_application("innocent", forbidden)

    # Someone with access to the database rewrites the application's command.
    with sqlite3.connect(data_dir / "flame.db") as db:
        (spec_text,) = db.execute("SELECT spec FROM applications WHERE name = 'innocent'").fetchone()
        spec = json.loads(spec_text)
        spec.update(command="/bin/sh", arguments=["-c", f"touch {marker}"])
        db.execute("UPDATE applications SET spec = ? WHERE name = 'innocent'", (json.dumps(spec),))

    with LocalCluster(executors=1, **sqlite) as second, flame.connect(second.endpoint) as conn:
        app = conn.get_application("innocent")
        assert app is not None and app.spec.command == "/bin/sh"
        conn.create_session("innocent", session_id="tampered").run(b"")

        def refused_by_the_node() -> list[str]:
            events = second.run(lambda sm: list(sm.controller.sessions["tampered"].session.events))
            return [e.message for e in events if "is not in its executor_manager.allowed_commands" in e.message]

        messages = wait_for(refused_by_the_node, timeout=60)
        assert isinstance(messages, list) and "refuses application innocent" in messages[0]
    assert not marker.exists()


def test_the_cli_sends_a_token_file_and_explains_a_refusal(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.yaml")
    with LocalCluster(executors=1, cluster={"auth": {"mode": "token", "tokens_file": str(tokens)}}) as cluster:
        token_file = tmp_path / "viewer.token"
        token_file.write_text(token_of("viewer") + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
        env["HOME"] = str(tmp_path)  # no ~/.flame/flame.yaml

        def flmctl(*argv: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "flame", *argv, "--endpoint", cluster.endpoint]
            return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

        listed = flmctl("list", "-a", "--token-file", str(token_file))
        assert listed.returncode == 0 and "flmping" in listed.stdout, listed.stderr
        refused = flmctl("create", "-a", "flmping", "--token-file", str(token_file))
        assert refused.returncode == 1
        assert "needs one of the roles admin, user" in refused.stderr and "Traceback" not in refused.stderr
        anonymous = flmctl("list", "-a")
        assert anonymous.returncode == 1 and "needs a bearer token" in anonymous.stderr
        missing = flmctl("list", "-a", "--token-file", str(tmp_path / "nope"))
        assert missing.returncode == 1 and "cannot read --token-file" in missing.stderr


def test_rotating_a_node_token_with_sighup(processes: Processes, tmp_path: Path) -> None:
    config, endpoint = _token_cluster(tmp_path)
    manager = processes.start("session-manager", "--config", str(config))
    admin = wait_for(lambda: _connect(endpoint, token_of("admin")), timeout=30)
    assert isinstance(admin, flame.Connection)
    with admin:
        node_token = tmp_path / "node.token"
        node_token.write_text(token_of("node"))
        agent = processes.start("executor-manager", "--session-manager", endpoint, "--node-name", "rotating",
                                "--work-dir", str(tmp_path / "w"), "--token-file", str(node_token))  # fmt: skip
        wait_for(lambda: [n.name for n in admin.list_nodes()] == ["rotating"], timeout=30)

        # the node gets a new token: the session manager learns it, the executor manager reads it,
        # then the old one is removed
        tokens = tmp_path / "tokens.yaml"
        text = tokens.read_text()
        fresh = "node-token-rotated-0123456789"
        tokens.write_text(text.replace(token_of("node"), fresh))
        node_token.write_text(fresh)
        agent.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded the token from" in processes.output(), timeout=20)
        manager.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded 5 token(s)" in processes.output(), timeout=20)

        # the old stream is cut at the next order for the node; it reconnects with the new token
        session = admin.create_session("flmping", session_id="after-rotation")
        assert json.loads(session.run(b"").result(90))["session"] == "after-rotation"
        assert "UNAUTHENTICATED" in processes.output()  # the stream opened with the old token ended
