"""Tokens, certificates and raw calls shared by the authentication tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import yaml

# One holder per role (two users, to test ownership); every token is at least 16 characters.
TOKENS = {
    "root": ("admin", "admin-token-0123456789abcdef"),
    "alice": ("user", "alice-token-0123456789abcdef"),
    "bob": ("user", "bob-token-0123456789abcdefgh"),
    "node-a": ("node", "node-token-0123456789abcdef"),
    "watcher": ("viewer", "viewer-token-0123456789abcdef"),
}
HOLDER = {"admin": "root", "user": "alice", "node": "node-a", "viewer": "watcher"}


def token_of(role_or_name: str) -> str:
    name = HOLDER.get(role_or_name, role_or_name)
    return TOKENS[name][1]


def write_tokens(path: Path, names: Iterable[str] | None = None) -> Path:
    names = list(TOKENS) if names is None else list(names)
    entries = [{"name": name, "role": TOKENS[name][0], "token": TOKENS[name][1]} for name in names]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


def bearer(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return None if token is None else (("authorization", f"Bearer {token}"),)


def _ident(data: bytes) -> bytes:
    return data


def raw_call(
    channel: grpc.Channel, path: str, payload: bytes, token: str | None, *, streaming: bool, timeout: float = 5
) -> tuple[grpc.StatusCode, str]:
    """Call ``path`` with serialized ``payload``; (status code, details)."""
    try:
        if streaming:
            call = channel.unary_stream(path, request_serializer=_ident, response_deserializer=_ident)
            for _ in call(payload, timeout=timeout, metadata=bearer(token)):
                pass
        else:
            call = channel.unary_unary(path, request_serializer=_ident, response_deserializer=_ident)
            call(payload, timeout=timeout, metadata=bearer(token))
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=flame-test-ca", cwd=directory)  # fmt: skip
    return directory / "ca.crt"


def make_certificate(directory: Path, name: str, subject: str, san: str | None = None) -> tuple[Path, Path]:
    """A certificate signed by ``directory``'s CA: (certificate, key)."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={subject}", cwd=directory)  # fmt: skip
    extra: list[str] = []
    if san is not None:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", *extra, cwd=directory)  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


def state_digest(sm: Any) -> str:
    """What a refused call must not change: applications, sessions (state, spec), task ids, nodes.
    Task progress is left out: the cluster runs the tasks it has while the test calls."""
    c = sm.controller
    apps = sorted((a.name, repr(a.spec)) for a in c.applications.values())
    sessions = sorted(
        (sid, int(rec.session.state), repr(rec.session.spec), sorted(rec.tasks)) for sid, rec in c.sessions.items()
    )
    return repr((apps, sessions, sorted(c.nodes)))
