"""A standalone object cache holds users to their own sessions by asking the session manager.

A real session manager process with token authentication and an object cache made from the same
flame-cluster.yaml (as `flame object-cache --config` makes it), over real gRPC and Flight: the
cache passes each user's own token on to GetSession, so the session manager's rules decide, and it
refuses what it could not ask about.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flamepy
import grpc
import pytest

import flame
from flame import ObjectRef
from flame.client._cache import ObjectCacheClient
from flame.config import load_cache_config
from flame.errors import PermissionDenied, Unauthenticated, Unavailable
from flame.object_cache import ObjectCache
from flame.protocol import frontend_pb2, frontend_pb2_grpc
from tests.integration.auth_helpers import TOKENS, token_of, write_tokens
from tests.integration.conftest import free_port, wait_for

OWN_ONLY = "role user reaches its own sessions' objects only"


class Standalone:
    """A session manager process and an object cache in this process, from one config file."""

    def __init__(self, tmp_path: Path, *, sm_flamepy: bool) -> None:
        self.tmp_path = tmp_path
        self.tokens = write_tokens(tmp_path / "tokens.yaml")
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.flamepy_endpoint = f"http://127.0.0.1:{free_port()}" if sm_flamepy else None
        flamepy_line = f"    flamepy_endpoint: {self.flamepy_endpoint}\n" if sm_flamepy else ""
        self.config = tmp_path / "flame-cluster.yaml"
        self.config.write_text(
            f"cluster:\n  endpoint: {self.endpoint}\n  storage: memory\n  data_dir: {tmp_path / 'data'}\n"
            f"  auth:\n    mode: token\n    tokens_file: {self.tokens}\n{flamepy_line}"
            "cache:\n  endpoint: grpc://127.0.0.1:0\n  storage: none\n  flamepy_endpoint: grpc://127.0.0.1:0\n"
        )
        self.log = tmp_path / "session-manager.log"
        with open(self.log, "ab") as out:
            self.manager = subprocess.Popen(
                [sys.executable, "-m", "flame", "session-manager", "--config", str(self.config)],
                stdout=out,
                stderr=out,
            )
        self.cache = ObjectCache(load_cache_config(self.config, env={}))
        self.connections: list[flame.Connection] = []

    def start(self) -> Standalone:
        wait_for(lambda: self.manager.poll() is not None or self._answers(), timeout=30)
        assert self.manager.poll() is None, self.log.read_text()
        self.cache.start()
        return self

    def _answers(self) -> bool:
        try:
            with flame.connect(self.endpoint, token=token_of("admin"), timeout=1) as admin:
                admin.list_sessions()
        except flame.Unavailable:
            return False
        return True

    def connect(self, name: str) -> flame.Connection:
        conn = flame.connect(self.endpoint, token=token_of(name))
        self.connections.append(conn)
        return conn

    def client(self, name: str | None) -> ObjectCacheClient:
        """The cache's main listener with ``name``'s token (None: the flamepy listener, no token)."""
        if name is None:
            return ObjectCacheClient(self.cache.flamepy_endpoint)
        return ObjectCacheClient(self.cache.endpoint, token=token_of(name))

    def stop_session_manager(self) -> None:
        if self.manager.poll() is None:
            self.manager.terminate()
            self.manager.wait(30)

    def stop(self) -> None:
        for conn in self.connections:
            conn.close()
        self.cache.shutdown()
        self.stop_session_manager()


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    cluster = Standalone(tmp_path, sm_flamepy=False)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def refused(call: Callable[[], Any], error: type[Exception] = PermissionDenied) -> str:
    with pytest.raises(error) as info:
        call()
    return str(info.value)


def test_a_user_reaches_only_its_own_sessions_objects(standalone: Standalone) -> None:
    sid = standalone.connect("alice").create_session("flmping", session_id="alices").id
    alice = standalone.client("alice")
    ref = alice.put_object(f"flmping/{sid}", {"alice's": "common data"})
    bob = standalone.client("bob")

    assert f"session 'alices' is not bob's; {OWN_ONLY}" in refused(lambda: bob.get_object(ref))
    assert "object cache DoPut" in refused(lambda: bob.put_object(f"flmping/{sid}", "planted"))
    assert "object cache DoPut" in refused(lambda: bob.update_object(ref, "overwritten"))
    assert "object cache DoPut" in refused(lambda: bob.patch_object(ref, "appended"))
    assert "object cache DoAction DELETE" in refused(lambda: bob.delete_objects(f"flmping/{sid}"))
    assert "every session of 'flmping' needs role admin" in refused(lambda: bob.delete_objects("flmping/*"))
    assert ref.key not in [r.key for r in bob.list_objects()]

    assert alice.get_object(ObjectRef(ref.endpoint, ref.key, 0)) == {"alice's": "common data"}  # untouched
    assert alice.patch_object(ref, "hers").version == 2
    assert [r.key for r in alice.list_objects()] == [ref.key]
    for role in ("admin", "node", "viewer"):  # no user: not asked, the role decides
        assert standalone.client(role).get_object(ObjectRef(ref.endpoint, ref.key, 0)) == {"alice's": "common data"}
    standalone.client("admin").delete_objects(f"flmping/{sid}")
    assert standalone.client("admin").list_objects() == []


def test_a_session_that_does_not_exist_yet_is_its_first_writers_until_it_is_created(standalone: Standalone) -> None:
    bob, alice = standalone.client("bob"), standalone.client("alice")
    early = bob.put_object("flmping/bobs-next", "bob's common data")  # flame.Executor puts first
    assert bob.get_object(early) == "bob's common data"
    claimed = "session 'bobs-next' does not exist (yet, or any more) and its objects are 'bob''s"
    assert claimed in refused(lambda: alice.get_object(ObjectRef(early.endpoint, early.key, 0)))
    assert claimed in refused(lambda: alice.put_object("flmping/bobs-next", "planted"))
    assert early.key not in [r.key for r in alice.list_objects()]
    # Once the session exists its owner decides, whoever wrote first.
    standalone.connect("alice").create_session("flmping", session_id="bobs-next")

    def bob_refused() -> bool:  # "does not exist" is believed for a second at most
        try:
            bob.get_object(ObjectRef(early.endpoint, early.key, 0))
        except PermissionDenied as exc:
            return f"session 'bobs-next' is not bob's; {OWN_ONLY}" in str(exc)
        return False

    def alice_reads() -> bool:  # her own "does not exist" answer too
        try:
            return bool(alice.get_object(ObjectRef(early.endpoint, early.key, 0)) == "bob's common data")
        except PermissionDenied:
            return False

    wait_for(bob_refused, timeout=10)
    wait_for(alice_reads, timeout=10)


def test_a_deleted_sessions_objects_stay_its_owners(standalone: Standalone) -> None:
    alice_conn = standalone.connect("alice")
    session = alice_conn.create_session("flmping", session_id="gone")
    alice = standalone.client("alice")
    ref = alice.put_object("flmping/gone", "alice's")
    session.close()
    stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(standalone.endpoint.removeprefix("http://")))
    stub.DeleteSession(
        frontend_pb2.DeleteSessionRequest(session_id="gone"),
        metadata=[("authorization", f"Bearer {token_of('alice')}")],
    )
    with pytest.raises(flame.NotFound):
        alice_conn.get_session("gone")

    def deleted_for_bob() -> bool:  # bob's "not yours" answer is believed for a few seconds
        try:
            standalone.client("bob").get_object(ObjectRef(ref.endpoint, ref.key, 0))
        except PermissionDenied as exc:
            return "session 'gone' does not exist (yet, or any more) and its objects are 'alice''s" in str(exc)
        return False

    wait_for(deleted_for_bob, timeout=15)
    assert alice.get_object(ObjectRef(ref.endpoint, ref.key, 0)) == "alice's"


def test_with_the_session_manager_down_a_users_call_is_refused_not_allowed(standalone: Standalone) -> None:
    admin = standalone.client("admin")
    theirs = admin.put_object("flmping/never-asked", "admin's")
    standalone.stop_session_manager()
    alice = standalone.client("alice")
    message = refused(lambda: alice.get_object(theirs), Unavailable)
    assert (
        f"could not ask the session manager at {standalone.endpoint} (cluster.endpoint) whether session "
        "'never-asked' is yours"
    ) in message
    refused(lambda: alice.put_object("flmping/does-not-exist", "planted"), Unavailable)  # not taken as absent
    refused(lambda: alice.list_objects(), Unavailable)  # a listing is refused, not quietly filtered
    assert [r.key for r in admin.list_objects()] == [theirs.key]  # an admin is not asked
    assert standalone.client("node").get_object(theirs) == "admin's"


def test_a_token_revoked_by_a_reload_is_refused(standalone: Standalone) -> None:
    sid = standalone.connect("alice").create_session("flmping", session_id="revoked").id
    alice = standalone.client("alice")
    ref = alice.put_object(f"flmping/{sid}", "before")
    write_tokens(standalone.tokens, [name for name in TOKENS if name != "alice"])
    standalone.manager.send_signal(signal.SIGHUP)  # the session manager first: the cache still takes the token

    def alice_refused() -> str | None:
        try:
            alice.get_object(ObjectRef(ref.endpoint, ref.key, 0))
        except Unauthenticated as exc:
            return str(exc)
        return None

    message = wait_for(alice_refused, timeout=20)  # once the answer the cache kept runs out
    assert "could not ask the session manager" in str(message) and "unknown, or revoked" in str(message)
    assert standalone.cache.reload()  # then the cache itself
    assert "unknown, or revoked" in refused(lambda: alice.get_object(ref), Unauthenticated)
    assert standalone.client("bob").put_object("flmping/bobs", "still works").version == 1


def test_a_flamepy_listener_caller_is_refused_session_objects_when_the_session_manager_has_no_such_listener(
    standalone: Standalone,
) -> None:
    anonymous = standalone.client(None)
    message = refused(lambda: anonymous.put_object("flmping/anything", "x"))
    assert "no flamepy listener to ask without a token (cluster.auth.flamepy_endpoint)" in message


@pytest.fixture
def with_flamepy(tmp_path: Path) -> Iterator[Standalone]:
    cluster = Standalone(tmp_path, sm_flamepy=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_flamepy_listener_callers_reach_the_sessions_flamepy_made(with_flamepy: Standalone) -> None:
    assert with_flamepy.flamepy_endpoint is not None
    conn = flamepy.connect(with_flamepy.flamepy_endpoint)  # unmodified flamepy: no token
    session = conn.create_session(flamepy.SessionAttributes(application="flmping"))
    anonymous = with_flamepy.client(None)
    ref = anonymous.put_object(f"flmping/{session.id}", "flamepy's")
    assert anonymous.get_object(ref) == "flamepy's"
    alices = with_flamepy.connect("alice").create_session("flmping", session_id="alices").id
    mine = with_flamepy.client("alice").put_object(f"flmping/{alices}", "alice's")
    assert f"session 'alices' is not flamepy's; {OWN_ONLY}" in refused(lambda: anonymous.get_object(mine))
    assert f"session '{session.id}' is not alice's" in refused(lambda: with_flamepy.client("alice").get_object(ref))
    conn.close_session(session.id)
