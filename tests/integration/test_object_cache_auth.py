"""The object cache checks callers as the session manager does: tokens, roles, the flamepy listener.

Real Flight servers and clients over loopback; flamepy 0.6.0's cache client runs unmodified in a
subprocess (it reads its endpoint once per process).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import flame
from flame.client._cache import ObjectCacheClient
from flame.config import cache_config_from_dict
from flame.errors import InvalidArgument, PermissionDenied, Unauthenticated
from flame.object_cache import ObjectCache
from flame.testing import LocalCluster
from tests.integration.auth_helpers import TOKENS, token_of, write_tokens


def _config(tmp_path: Path, **cache: object) -> dict[str, object]:
    """Roles only: with user_sessions own a standalone cache asks a session manager who owns a
    session (tests/integration/test_object_cache_owners.py), and there is none here."""
    tokens = write_tokens(tmp_path / "tokens.yaml")
    return {
        "cluster": {"auth": {"mode": "token", "tokens_file": str(tokens), "user_sessions": "all"}},
        "cache": {"endpoint": "grpc://127.0.0.1:0", "storage": "none", **cache},
    }


@pytest.fixture()
def cache(tmp_path: Path) -> Iterator[ObjectCache]:
    with ObjectCache(cache_config_from_dict(_config(tmp_path))) as running:
        yield running


def client(cache: ObjectCache, token: str | None) -> ObjectCacheClient:
    return ObjectCacheClient(cache.endpoint, token=token)


def keys(cache: ObjectCache) -> list[str]:
    return [ref.key for ref in client(cache, token_of("admin")).list_objects()]


@pytest.mark.parametrize("token", [None, "not-a-token-of-this-cluster-at-all"], ids=["no token", "unknown token"])
def test_a_caller_without_a_known_token_can_neither_put_nor_read(
    cache: ObjectCache, token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    stored = client(cache, token_of("user")).put_object("app/s", {"secret": 1})
    stranger = client(cache, token)
    with caplog.at_level(logging.WARNING, logger="flame.auth.audit"):
        with pytest.raises(Unauthenticated, match="bearer token"):
            stranger.put_object("app/s", {"planted": True})
        with pytest.raises(Unauthenticated):
            stranger.get_object(stored)
        with pytest.raises(Unauthenticated):
            stranger.list_objects()
        with pytest.raises(Unauthenticated):
            stranger.delete_objects("app/s")
    assert keys(cache) == [stored.key]  # nothing planted, nothing deleted
    assert any("refused object cache DoPut by an unauthenticated caller" in r.getMessage() for r in caplog.records)


def test_a_viewer_reads_but_may_not_write_and_the_refusal_names_the_roles(cache: ObjectCache) -> None:
    stored = client(cache, token_of("user")).put_object("app/s", [1, 2, 3])
    viewer = client(cache, token_of("viewer"))
    assert viewer.get_object(stored) == [1, 2, 3]
    assert [ref.key for ref in viewer.list_objects()] == [stored.key]
    with pytest.raises(PermissionDenied, match=r"DoPut needs one of the roles admin, node, user; watcher \(viewer"):
        viewer.put_object("app/s", "mine")
    with pytest.raises(PermissionDenied):
        viewer.patch_object(stored, [4])
    with pytest.raises(PermissionDenied, match="DoAction"):
        viewer.delete_objects("app/s")
    assert client(cache, token_of("admin")).get_object(stored) == [1, 2, 3]
    assert keys(cache) == [stored.key]


@pytest.mark.parametrize("role", ["admin", "user", "node"])
def test_admin_user_and_node_tokens_put_patch_read_and_delete(cache: ObjectCache, role: str) -> None:
    holder = client(cache, token_of(role))
    ref = holder.put_object(f"{role}/s", {"n": 1})
    assert holder.get_object(ref) == {"n": 1}
    holder.delete_objects(f"{role}/s")
    assert keys(cache) == []


def test_a_reload_revokes_a_removed_token_from_the_next_call_on(cache: ObjectCache, tmp_path: Path) -> None:
    alice = client(cache, token_of("alice"))
    ref = alice.put_object("app/s", "before")
    write_tokens(tmp_path / "tokens.yaml", [name for name in TOKENS if name != "alice"])
    assert cache.reload()
    with pytest.raises(Unauthenticated, match="unknown, or revoked"):
        alice.get_object(ref.__class__(ref.endpoint, ref.key, 0))
    assert client(cache, token_of("bob")).get_object(ref) == "before"


def test_a_broken_tokens_file_is_refused_at_start_with_its_reason(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "tokens.yaml").write_text("tokens: [{name: x, role: emperor, token: 0123456789abcdef0123}]\n")
    with pytest.raises(InvalidArgument, match="emperor"):
        ObjectCache(cache_config_from_dict(config))


def test_the_flamepy_endpoint_needs_auth_on_and_a_plain_grpc_address(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"needs cluster\.auth\.mode token or mtls"):
        cache_config_from_dict({"cache": {"flamepy_endpoint": "grpc://127.0.0.1:0"}})
    with pytest.raises(InvalidArgument, match="a plain grpc://host:port listener"):
        cache_config_from_dict(_config(tmp_path, flamepy_endpoint="grpcs://127.0.0.1:0"))


def test_mtls_off_loopback_without_client_certificate_checks_is_refused(tmp_path: Path) -> None:
    config = {
        "cluster": {"auth": {"mode": "mtls", "identities": [{"subject": "a", "role": "admin", "name": "a"}]}},
        "cache": {"endpoint": "grpc://0.0.0.0:0"},
    }
    with pytest.raises(InvalidArgument, match=r"must check client certificates: serve grpcs:// and give cache.tls"):
        cache_config_from_dict(config)


FLAMEPY = textwrap.dedent(
    """
    import json, sys
    from flamepy.core import cache
    out = {}
    try:
        ref = cache.put_object("fp/s", {"from": "flamepy"})
        out["put"] = ref.endpoint
        out["got"] = cache.get_object(ref)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    if len(sys.argv) > 1:
        try:
            endpoint, key = sys.argv[1].split("|")
            out["read_ours"] = cache.get_object(cache.ObjectRef(endpoint=endpoint, key=key, version=1))
        except Exception as exc:
            out["read_ours_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


def run_flamepy(home: Path, endpoint: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "FLAME_CACHE_ENDPOINT": endpoint, "HOME": str(home)}  # no ~/.flame/flame.yaml
    done = subprocess.run(
        [sys.executable, "-c", FLAMEPY, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("role", ["user", "viewer"])
def test_unmodified_flamepy_uses_the_flamepy_listener_with_its_configured_role(tmp_path: Path, role: str) -> None:
    config = _config(tmp_path, flamepy_endpoint="grpc://127.0.0.1:0")
    config["cluster"]["auth"]["flamepy_role"] = role  # type: ignore[index]
    with ObjectCache(cache_config_from_dict(config)) as cache:
        ours = client(cache, token_of("user")).put_object("sdk/s", "from our SDK")
        refused = run_flamepy(tmp_path, cache.endpoint)
        assert "error" in refused and "bearer token" in str(refused["error"])

        result = run_flamepy(tmp_path, cache.flamepy_endpoint, f"{cache.flamepy_endpoint}|{ours.key}")
        assert result["read_ours"] == "from our SDK"  # the same store behind both listeners
        if role == "user":
            assert result["put"] == cache.flamepy_endpoint and result["got"] == {"from": "flamepy"}
        else:
            assert "DoPut needs one of the roles admin, node, user; flamepy (viewer" in str(result["error"])
        assert [key for key in keys(cache) if key.startswith("fp/")] == ([] if role == "viewer" else [key_of(cache)])


def key_of(cache: ObjectCache) -> str:
    return next(ref.key for ref in client(cache, token_of("admin")).list_objects("fp/s"))


def big(n: int) -> bytes:
    return bytes(range(256)) * (n // 256)


def test_flame_up_services_read_large_objects_with_the_node_credential(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.yaml")
    auth = {"auth": {"mode": "token", "tokens_file": str(tokens)}}
    with LocalCluster(executors=1, cluster=auth) as cluster:
        with pytest.raises(Unauthenticated):
            ObjectCacheClient(cluster.cache_endpoint).list_objects()
        conn = flame.connect(cluster.endpoint, token=token_of("user"))
        try:
            common = big(2 * 1024 * 1024)  # over large_object_threshold: it goes through the cache
            with flame.Executor(
                connection=conn, common=common, cache_endpoint=cluster.cache_endpoint, pickle_by_value=[__name__]
            ) as pool:
                assert pool.submit(len, big(3 * 1024 * 1024)).result(timeout=60) == 3 * 1024 * 1024
                assert pool.submit(_common_size).result(timeout=60) == len(common)
            assert len(conn.cache_at(cluster.cache_endpoint).list_objects()) >= 2  # both went through the cache
        finally:
            conn.close()


def _common_size() -> int:
    return len(flame.common())


def test_with_mtls_the_cache_takes_only_client_certificates_its_ca_signed(tmp_path: Path) -> None:
    from tests.integration.auth_helpers import make_ca, make_certificate

    ca = make_ca(tmp_path)
    server_cert, server_key = make_certificate(tmp_path, "server", "localhost", "DNS:localhost,IP:127.0.0.1")
    node_cert, node_key = make_certificate(tmp_path, "node", "worker-1")
    other = tmp_path / "other"
    other.mkdir()
    make_ca(other)
    stranger_cert, stranger_key = make_certificate(other, "stranger", "worker-1")
    config = {
        "cluster": {"auth": {"mode": "mtls", "identities": [{"subject": "worker-1", "role": "node", "name": "w"}]}},
        "cache": {
            "endpoint": "grpcs://127.0.0.1:0",
            "tls": {"cert_file": str(server_cert), "key_file": str(server_key), "ca_file": str(ca)},
        },
    }
    with ObjectCache(cache_config_from_dict(config)) as cache:
        endpoint = cache.endpoint.replace("grpc+tls", "grpcs")
        node = ObjectCacheClient(endpoint, str(ca), cert_file=str(node_cert), key_file=str(node_key))
        ref = node.put_object("app/s", "signed")
        assert node.get_object(ref) == "signed"
        for cert, key in ((None, None), (str(stranger_cert), str(stranger_key))):
            anonymous = ObjectCacheClient(endpoint, str(ca), cert_file=cert, key_file=key)
            with pytest.raises(flame.FlameError):
                anonymous.put_object("app/s", "planted")
        assert [r.key for r in node.list_objects()] == [ref.key]


def test_on_flame_up_a_user_reaches_only_its_own_sessions_objects(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.yaml")
    auth = {"auth": {"mode": "token", "tokens_file": str(tokens)}}
    with LocalCluster(executors=1, cluster=auth) as cluster:
        endpoint = cluster.cache_endpoint
        alice, bob = (flame.connect(cluster.endpoint, token=token_of(name)) for name in ("alice", "bob"))
        try:
            session = alice.create_session("flmping")
            ref = alice.cache_at(endpoint).put_object(f"flmping/{session.id}", {"alice's": "data"})
            theirs = bob.cache_at(endpoint)
            with pytest.raises(PermissionDenied, match=f"session '{session.id}' belongs to 'alice'"):
                theirs.get_object(ref)
            with pytest.raises(PermissionDenied):
                theirs.put_object(f"flmping/{session.id}", "planted")
            with pytest.raises(PermissionDenied):
                theirs.delete_objects(f"flmping/{session.id}")
            with pytest.raises(PermissionDenied, match="every session of 'flmping' needs role admin"):
                theirs.delete_objects("flmping/*")
            assert ref.key not in [r.key for r in theirs.list_objects()]
            # A session that does not exist yet is its first writer's (flame.Executor puts first).
            early = theirs.put_object("flmping/bobs-next-session", "bob's")
            assert theirs.get_object(early) == "bob's"
            with pytest.raises(PermissionDenied, match="its objects are 'bob''s"):
                alice.cache_at(endpoint).put_object("flmping/bobs-next-session", "planted")
            admin = ObjectCacheClient(endpoint, token=token_of("admin"))
            assert admin.get_object(ref) == {"alice's": "data"}
            assert alice.cache_at(endpoint).get_object(ref) == {"alice's": "data"}
            assert [r.key for r in admin.list_objects(f"flmping/{session.id}")] == [ref.key]
        finally:
            alice.close()
            bob.close()
