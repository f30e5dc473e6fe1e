"""Who is calling: bearer tokens and client certificates mapped to identities with a role."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flame.auth.roles import Role
from flame.config import CertificateIdentity, TokenEntry, load_tokens, token_digest
from flame.errors import InvalidArgument, Unauthenticated

logger = logging.getLogger(__name__)

_BEARER = "bearer "


class Authenticator(Protocol):
    """Who is calling, from a call's metadata (and, with mTLS, its auth context)."""

    #: Changes when the credentials are reloaded: open streams check their caller again.
    generation: int

    def authenticate(self, metadata: Any, auth_context: Any = None) -> Identity: ...


@dataclass(frozen=True)
class Identity:
    """A caller: ``name`` (for the audit log and session ownership), its role, and how it was known."""

    name: str
    role: Role
    via: str  # "token", "certificate", "flamepy listener", "local node"

    def __str__(self) -> str:
        return f"{self.name} ({self.role.value}, {self.via})"


class TokenAuthenticator:
    """Bearer tokens from ``cluster.auth.tokens_file``, compared in constant time; ``reload()`` on SIGHUP.

    A token that passed the comparison is remembered by its exact header value (a dict, whose
    string hashing is keyed per process, so a lookup tells a caller nothing about other tokens):
    the comparison with every known token runs once per distinct token, not once per call. A
    reload forgets them all.
    """

    MAX_REMEMBERED = 4096

    def __init__(self, path: Path) -> None:
        self._path = path
        self.generation = 0
        self._verified: dict[str, Identity] = {}
        self._entries = _identities(load_tokens(path))
        self._extra: tuple[tuple[bytes, Identity], ...] = ()
        self._all = self._entries  # what authenticate() compares against: the file's and added tokens

    def reload(self) -> bool:
        """Re-read the tokens file; on a bad file keep the previous tokens and say why. True if reloaded."""
        try:
            entries = load_tokens(self._path)
        except InvalidArgument as exc:
            logger.error("tokens not reloaded, the previous ones stay in force: %s", exc.message)
            return False
        self._entries = _identities(entries)
        self._all = (*self._entries, *self._extra)
        self._verified = {}
        self.generation += 1
        logger.info("reloaded %d token(s) from %s", len(entries), self._path)
        return True

    def add(self, token: str, identity: Identity) -> None:
        """A token that is not in the file (the all-in-one cluster's own node); it survives reloads."""
        self._extra = (*self._extra, (token_digest(token), identity))
        self._all = (*self._entries, *self._extra)
        self._verified = {}

    def authenticate(self, metadata: Sequence[tuple[str, Any]] | None, auth_context: Any = None) -> Identity:
        header = _authorization(metadata)
        known = self._verified.get(header) if header is not None else None
        if known is not None:
            return known
        token = _bearer(header)
        if token is None:
            raise Unauthenticated(
                "this cluster needs a bearer token: set token or token_file in the current context of "
                "~/.flame/flame.yaml, $FLAME_TOKEN, or --token-file (flamepy clients: use the cluster's "
                "flamepy endpoint)"
            )
        digest = token_digest(token)
        found: Identity | None = None
        compare = hmac.compare_digest
        for known_digest, identity in self._all:
            # Every entry is compared, so the time taken does not tell which one matched.
            if compare(known_digest, digest):
                found = identity
        if found is None:
            raise Unauthenticated("the bearer token is not accepted by this cluster (unknown, or revoked)")
        if header is not None and len(self._verified) < self.MAX_REMEMBERED:
            self._verified[header] = found
        return found


class CertificateAuthenticator:
    """mTLS: the client certificate's common name or a subject alternative name, looked up in
    ``cluster.auth.identities``."""

    generation = 0  # certificates are checked by the TLS layer; the mapping is fixed for the process

    def __init__(self, identities: Iterable[CertificateIdentity]) -> None:
        self._by_subject = {
            rule.subject.encode(): Identity(rule.name, Role(rule.role), "certificate") for rule in identities
        }

    def authenticate(self, metadata: Sequence[tuple[str, Any]] | None, auth_context: Any = None) -> Identity:
        context = auth_context or {}
        names = [*context.get("x509_common_name", ()), *context.get("x509_subject_alternative_name", ())]
        if not names:
            raise Unauthenticated("this cluster needs a client certificate signed by its CA (mutual TLS)")
        for name in names:
            identity = self._by_subject.get(name)
            if identity is not None:
                return identity
        shown = ", ".join(repr(n.decode(errors="replace")) for n in names)
        raise Unauthenticated(
            f"the client certificate ({shown}) is not mapped to an identity in cluster.auth.identities"
        )


class FixedIdentity:
    """Every call gets the same identity: the unauthenticated flamepy listener."""

    generation = 0

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def authenticate(self, metadata: Sequence[tuple[str, Any]] | None, auth_context: Any = None) -> Identity:
        return self.identity


def _identities(entries: Iterable[TokenEntry]) -> tuple[tuple[bytes, Identity], ...]:
    return tuple((entry.sha256, Identity(entry.name, Role(entry.role), "token")) for entry in entries)


def _authorization(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The one ``authorization`` header's value (None: none); several are refused."""
    found: str | None = None
    for key, value in metadata or ():
        if key == "authorization":
            if found is not None:
                raise Unauthenticated("a call carries one authorization header, this one has several")
            found = value if isinstance(value, str) else ""
    return found


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    if header[:7].lower() != _BEARER:
        raise Unauthenticated("the authorization header must be 'Bearer <token>'")
    return header[7:].strip() or None
