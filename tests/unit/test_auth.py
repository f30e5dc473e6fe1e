"""cluster.auth and allowed_commands as config, the tokens file, and the authenticators (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from flame.apps import builtin_applications
from flame.apps.flmping import flmping_application_spec
from flame.auth.identity import CertificateAuthenticator, TokenAuthenticator
from flame.config import (
    BUILTIN_COMMANDS,
    CommandAllowlist,
    cluster_config_from_dict,
    executor_manager_config_from_dict,
    load_client_config,
    load_tokens,
)
from flame.errors import InvalidArgument, PermissionDenied, Unauthenticated
from flame.session_manager.auth import Identity, Role
from flame.session_manager.auth.access import CURRENT, Access
from flame.types import ApplicationSpec, Session, SessionSpec

TOKEN = "a-token-of-sixteen-or-more"


def cluster(section: dict[str, Any]) -> Any:
    return cluster_config_from_dict({"cluster": {"storage": "memory", **section}}, source="test.yaml")


def refused(section: dict[str, Any]) -> str:
    with pytest.raises(InvalidArgument) as info:
        cluster(section)
    return info.value.message


def test_defaults_on_loopback_are_no_auth_and_any_command() -> None:
    config = cluster({"endpoint": "http://127.0.0.1:0"})
    assert (config.auth.mode, config.auth.explicit, config.loopback_only) == ("none", False, True)
    assert config.allowed_commands.allows(ApplicationSpec(command="/bin/sh", arguments=["-c", "anything"]))
    assert cluster({"endpoint": "http://[::1]:0"}).loopback_only
    assert cluster({"endpoint": "http://localhost:0"}).loopback_only


def test_an_exposed_listener_needs_an_explicit_mode() -> None:
    message = refused({"endpoint": "http://0.0.0.0:8080"})
    assert "0.0.0.0 (not a loopback address) without authentication" in message
    assert "cluster.auth.mode to token or mtls, or to none" in message
    config = cluster({"endpoint": "http://0.0.0.0:8080", "auth": {"mode": "none"}})
    assert (config.auth.mode, config.auth.explicit, config.loopback_only) == ("none", True, False)
    # off loopback only the built-in applications run unless the allowlist says otherwise
    assert config.allowed_commands.patterns == BUILTIN_COMMANDS
    assert config.allowed_commands.allows(flmping_application_spec())
    assert not config.allowed_commands.allows(ApplicationSpec(command="${FLAME_PYTHON}", arguments=["evil.py"]))


def test_off_loopback_every_enabled_builtin_and_the_runner_may_register_and_run() -> None:
    every = ("flmexec", "flmfunc", "flmping", "flmrun")
    config = cluster({"endpoint": "http://0.0.0.0:8080", "auth": {"mode": "none"}})
    node = executor_manager_config_from_dict({"executor_manager": {"session_manager": "http://10.0.0.1:8080"}})
    for name, spec in builtin_applications(every).items():
        assert config.allowed_commands.allows(spec), name
        assert node.allowed_commands.allows(spec), name
    # flamepy's Runner registers each of its applications as a copy of flmrun's command line
    runner_app = ApplicationSpec(command="${FLAME_PYTHON}", arguments=["-m", "flamepy.runner.runpy"], url="file:///p")
    assert config.allowed_commands.allows(runner_app)
    # a built-in left out of cluster.builtin_applications is not allowed by default either
    without = cluster(
        {"endpoint": "http://0.0.0.0:8080", "auth": {"mode": "none"}, "builtin_applications": ["flmping"]}
    )
    flmexec = builtin_applications(["flmexec"])["flmexec"]
    assert without.allowed_commands.allows(flmping_application_spec())
    assert not without.allowed_commands.allows(flmexec)
    assert node.allowed_commands.allows(flmexec)  # a node cannot know; the session manager refused it


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"mode": "tokens"}, "invalid cluster.auth.mode 'tokens': expected one of: none, token, mtls"),
        ({"mode": "token"}, "cluster.auth.mode token needs cluster.auth.tokens_file"),
        ({"mode": "none", "tokens_file": "t"}, "no tokens_file unless cluster.auth.mode is token"),
        ({"mode": "mtls"}, "cluster.auth.mode mtls needs cluster.auth.identities"),
        ({"mode": "none", "flamepy_endpoint": "http://127.0.0.1:1"}, "flamepy_endpoint needs cluster.auth.mode"),
        ({"mode": "token", "tokens_file": "t", "flamepy_role": "node"}, "expected one of: admin, user, viewer"),
        ({"mode": "none", "user_sessions": "some"}, "own (a user sees only its sessions) or all"),
        ({"mode": "mtls", "identities": [{"subject": "a", "role": "root"}]}, "cluster.auth.identities[0].role"),
        ({"mode": "mtls", "identities": [{"role": "user"}]}, "the certificate's common name or a SAN"),
        ({"mode": "mtls", "identities": "alice"}, "a list of {subject, role[, name]} mappings"),
        ({"modes": "none"}, "unknown key 'cluster.auth.modes' (did you mean 'mode'?)"),
    ],
)
def test_bad_auth_settings_say_what_is_accepted(auth: dict[str, Any], expected: str) -> None:
    assert expected in refused({"endpoint": "http://127.0.0.1:0", "auth": auth})


def test_mtls_needs_tls_with_a_ca() -> None:
    identities = [{"subject": "alice", "role": "admin"}]
    message = refused({"endpoint": "http://127.0.0.1:0", "auth": {"mode": "mtls", "identities": identities}})
    assert "mode mtls needs cluster.tls" in message
    tls = {"cert_file": "/c", "key_file": "/k"}
    message = refused(
        {"endpoint": "https://127.0.0.1:0", "tls": tls, "auth": {"mode": "mtls", "identities": identities}}
    )
    assert "needs cluster.tls.ca_file" in message


def test_allowed_commands_are_globs_over_the_command_line() -> None:
    allow = CommandAllowlist(("/usr/bin/python3 -m myapp*", "/opt/tools/*"))
    assert allow.allows(ApplicationSpec(command="/usr/bin/python3", arguments=["-m", "myapp.worker"]))
    assert allow.allows(ApplicationSpec(command="/opt/tools/render", arguments=["--fast"]))
    assert not allow.allows(ApplicationSpec(command="/usr/bin/python3", arguments=["-c", "import os"]))
    assert not allow.allows(ApplicationSpec(command="/bin/sh"))
    with pytest.raises(PermissionDenied, match=r"command '/bin/sh -c x' is not allowed by here \(allowed: "):
        allow.check("app", ApplicationSpec(command="/bin/sh", arguments=["-c", "x"]), "here")
    assert "a list of globs" in refused({"endpoint": "http://127.0.0.1:0", "applications": {"allowed_commands": "*"}})
    assert "a list of globs" in refused({"endpoint": "http://127.0.0.1:0", "applications": {"allowed_commands": [""]}})


def test_the_executor_manager_has_its_own_allowlist_and_token(tmp_path: Path) -> None:
    remote = executor_manager_config_from_dict({"executor_manager": {"session_manager": "http://10.0.0.1:8080"}})
    assert remote.allowed_commands.patterns == BUILTIN_COMMANDS and remote.token is None
    token_file = tmp_path / "node.token"
    token_file.write_text(TOKEN + "\n")
    section = {"session_manager": "http://127.0.0.1:8080", "token_file": str(token_file)}
    local = executor_manager_config_from_dict({"executor_manager": section})
    assert local.allowed_commands.allows(ApplicationSpec(command="/anything"))
    assert (local.token, local.token_file) == (TOKEN, token_file)
    assert TOKEN not in repr(local)
    with pytest.raises(InvalidArgument, match="has both token and token_file"):
        executor_manager_config_from_dict({"executor_manager": {**section, "token": TOKEN}})


def _tokens(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    return path


def test_tokens_file(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"hashed-token-0123456789").hexdigest()
    path = _tokens(tmp_path, f"tokens:\n  - {{name: a, role: admin, token: {TOKEN}}}\n"
                             f"  - {{name: n, role: node, token_sha256: {digest}}}\n")  # fmt: skip
    entries = load_tokens(path)
    assert [(e.name, e.role) for e in entries] == [("a", "admin"), ("n", "node")]
    assert entries[1].sha256 == bytes.fromhex(digest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tokens: []\n", "a non-empty list"),
        ("tokens:\n  - {name: a, role: admin, token: short}\n", "at least 16 characters"),
        ("tokens:\n  - {name: a, role: king, token: 0123456789abcdefg}\n", "tokens[0].role"),
        ("tokens:\n  - {role: admin, token: 0123456789abcdefg}\n", "a non-empty name"),
        ("tokens:\n  - {name: a, role: admin}\n", "exactly one of token and token_sha256"),
        ("tokens:\n  - {name: a, role: admin, token_sha256: abc}\n", "64 hex digits"),
        (
            "tokens:\n  - {name: a, role: admin, token: 0123456789abcdefg}\n"
            "  - {name: b, role: user, token: 0123456789abcdefg}\n",
            "two entries have the same token",
        ),
    ],
)
def test_bad_tokens_files_are_refused_without_echoing_tokens(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_tokens(_tokens(tmp_path, text))
    assert expected in info.value.message
    assert "short" not in info.value.message and "0123456789abcdefg" not in info.value.message


def test_token_authenticator(tmp_path: Path) -> None:
    path = _tokens(tmp_path, f"tokens:\n  - {{name: a, role: user, token: {TOKEN}}}\n")
    auth = TokenAuthenticator(path)
    assert auth.authenticate([("authorization", f"Bearer {TOKEN}")]) == Identity("a", Role.USER, "token")
    assert auth.authenticate([("authorization", f"bearer  {TOKEN} ")]).name == "a"
    for metadata, message in [
        ([], "needs a bearer token"),
        ([("authorization", "Bearer ")], "needs a bearer token"),
        ([("authorization", "Bearer other-token-000000000")], "not accepted"),
        ([("authorization", f"Basic {TOKEN}")], "must be 'Bearer <token>'"),
        ([("authorization", f"Bearer {TOKEN}")] * 2, "has several"),
    ]:
        with pytest.raises(Unauthenticated, match=message):
            auth.authenticate(metadata)
    auth.add("local-node-token-000000000", Identity("me", Role.NODE, "local node"))
    _tokens(tmp_path, "tokens:\n  - {name: b, role: admin, token: b-token-0123456789abc}\n")
    assert auth.reload()
    with pytest.raises(Unauthenticated):
        auth.authenticate([("authorization", f"Bearer {TOKEN}")])  # revoked
    assert auth.authenticate([("authorization", "Bearer b-token-0123456789abc")]).role == Role.ADMIN
    assert auth.authenticate([("authorization", "Bearer local-node-token-000000000")]).name == "me"
    _tokens(tmp_path, "tokens: nonsense\n")
    assert not auth.reload()  # a broken file keeps the previous tokens
    assert auth.authenticate([("authorization", "Bearer b-token-0123456789abc")]).name == "b"


def test_certificate_authenticator() -> None:
    from flame.config import CertificateIdentity

    auth = CertificateAuthenticator(
        [CertificateIdentity("alice", "admin", "Alice"), CertificateIdentity("n.x", "node", "n")]
    )
    assert auth.authenticate(None, {"x509_common_name": [b"alice"]}) == Identity("Alice", Role.ADMIN, "certificate")
    san = {"x509_common_name": [b"host"], "x509_subject_alternative_name": [b"n.x"]}
    assert auth.authenticate(None, san).role == Role.NODE
    with pytest.raises(Unauthenticated, match=r"'mallory'.*not mapped"):
        auth.authenticate(None, {"x509_common_name": [b"mallory"]})
    with pytest.raises(Unauthenticated, match="needs a client certificate"):
        auth.authenticate(None, {})


def test_ownership() -> None:
    access = Access("own")
    theirs = Session(id="s", spec=SessionSpec(application="a", owner="alice"))
    nobodys = Session(id="t", spec=SessionSpec(application="a"))
    access.check(theirs)  # authentication off: no caller, no checks
    for identity, allowed in [
        (Identity("alice", Role.USER, "token"), [True, False]),
        (Identity("bob", Role.USER, "token"), [False, False]),
        (Identity("root", Role.ADMIN, "token"), [True, True]),
        (Identity("eye", Role.VIEWER, "token"), [True, True]),
    ]:
        reset = CURRENT.set(identity)
        try:
            results = []
            for session in (theirs, nobodys):
                try:
                    access.check(session)
                    results.append(True)
                except PermissionDenied:
                    results.append(False)
            assert results == allowed, identity
            assert [s.id for s in access.visible([theirs, nobodys])] == [
                s.id for s, ok in zip([theirs, nobodys], allowed, strict=True) if ok
            ]
            assert Access("all").visible([theirs, nobodys]) == [theirs, nobodys]
        finally:
            CURRENT.reset(reset)


def test_client_token_precedence(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("from-file-0123456789\n")
    config = tmp_path / "flame.yaml"
    config.write_text(
        "current-context: a\ncontexts:\n"
        f"  - {{name: a, cluster: {{endpoint: 'http://h:1', token_file: {token_file}}}}}\n"
        "  - {name: b, cluster: {endpoint: 'http://h:2', token_file: /does/not/exist}}\n"
    )
    assert load_client_config(config, env={}).token == "from-file-0123456789"
    assert load_client_config(config, env={"FLAME_TOKEN": "from-env"}).token == "from-env"
    assert load_client_config(config, env={"FLAME_TOKEN_FILE": str(token_file)}).token == "from-file-0123456789"
    assert "from-file" not in repr(load_client_config(config, env={}))
    config.write_text(config.read_text().replace("current-context: a", "current-context: b"))
    with pytest.raises(InvalidArgument, match=r"cannot read contexts\[1\]\.cluster\.token_file '/does/not/exist'"):
        load_client_config(config, env={})
