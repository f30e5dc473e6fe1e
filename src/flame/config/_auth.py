"""Who may do what: ``cluster.auth`` (authentication, roles) and ``cluster.applications`` (commands).

The session manager reads both; the executor manager reads its own ``allowed_commands``. The tokens
file (``cluster.auth.tokens_file``) is read here too, so that a reload on SIGHUP validates it the same
way as the first load.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flame.config._endpoint import Endpoint, parse_endpoint_from
from flame.config._values import Section, load_yaml, resolve_dir
from flame.errors import InvalidArgument, PermissionDenied
from flame.types import ApplicationSpec

ROLES = ("admin", "user", "node", "viewer")
AUTH_MODES = ("none", "token", "mtls")
USER_SESSIONS = ("own", "all")
MIN_TOKEN_LENGTH = 16
# The command line of each built-in application (flame.apps), as it is registered. flamepy's Runner
# registers its applications with flmrun's command, so allowing flmrun allows the Runner too.
BUILTIN_APPLICATION_COMMANDS = {
    "flmexec": "${FLAME_PYTHON} -m flame.apps.flmexec",
    "flmfunc": "${FLAME_PYTHON} -m flame.apps.flmfunc",
    "flmping": "${FLAME_PYTHON} -m flame.apps.flmping",
    "flmrun": "${FLAME_PYTHON} -m flamepy.runner.runpy",
}
BUILTIN_COMMANDS = tuple(BUILTIN_APPLICATION_COMMANDS.values())
ANY_COMMAND = ("*",)

_AUTH_KEYS = ("mode", "tokens_file", "identities", "flamepy_endpoint", "flamepy_role", "user_sessions")
_IDENTITY_KEYS = ("subject", "role", "name")
_APPLICATIONS_KEYS = ("allowed_commands",)
_TOKEN_KEYS = ("name", "role", "token", "token_sha256")


@dataclass(frozen=True)
class CertificateIdentity:
    """mTLS: a client certificate whose common name or a subject alternative name is ``subject``."""

    subject: str
    role: str
    name: str


@dataclass(frozen=True)
class TokenEntry:
    """One line of the tokens file: the SHA-256 of a bearer token and who holds it."""

    name: str
    role: str
    sha256: bytes


@dataclass(frozen=True)
class AuthConfig:
    """``cluster.auth``. ``explicit`` is whether the mode was written down (an implicit none is
    accepted on loopback listeners only)."""

    mode: str = "none"
    explicit: bool = False
    tokens_file: Path | None = None
    identities: tuple[CertificateIdentity, ...] = ()
    flamepy_endpoint: Endpoint | None = None
    flamepy_role: str = "user"
    user_sessions: str = "own"


@dataclass(frozen=True)
class CommandAllowlist:
    """Globs (fnmatch, case-sensitive) matched against an application's command line: its command
    and arguments joined by single spaces, before ``${VAR}`` expansion. ``*`` allows anything."""

    patterns: tuple[str, ...] = ANY_COMMAND

    def allows(self, spec: ApplicationSpec) -> bool:
        line = command_line(spec)
        return any(fnmatch.fnmatchcase(line, pattern) for pattern in self.patterns)

    def check(self, application: str, spec: ApplicationSpec, where: str) -> None:
        """Raise PermissionDenied unless ``spec``'s command line is allowed; ``where`` names the setting."""
        if not self.allows(spec):
            raise PermissionDenied(
                f"application {application!r}: command {command_line(spec)!r} is not allowed by {where} "
                f"(allowed: {', '.join(repr(p) for p in self.patterns) or 'nothing'})"
            )


def command_line(spec: ApplicationSpec) -> str:
    return " ".join([spec.command or "", *spec.arguments]).strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def parse_auth(cluster: Section, base_dir: Path | None) -> AuthConfig:
    auth = cluster.section("auth")
    auth.check_keys(_AUTH_KEYS)
    mode = auth.raw("mode")
    if mode is not None and mode not in AUTH_MODES:
        raise auth.error("mode", mode, f"one of: {', '.join(AUTH_MODES)}")
    mode = mode or "none"
    tokens_file = auth.optional_string("tokens_file")
    if mode == "token" and tokens_file is None:
        raise InvalidArgument(f"{auth.source}: {auth.key('mode')} token needs {auth.key('tokens_file')}")
    if mode != "token" and tokens_file is not None:
        raise auth.error("tokens_file", tokens_file, f"no tokens_file unless {auth.key('mode')} is token")
    flamepy_endpoint = None
    if auth.has("flamepy_endpoint"):
        if mode == "none":
            raise InvalidArgument(
                f"{auth.source}: {auth.key('flamepy_endpoint')} needs {auth.key('mode')} token or mtls "
                "(with none every listener is unauthenticated already)"
            )
        flamepy_endpoint = parse_endpoint_from(auth.raw("flamepy_endpoint"), auth.key("flamepy_endpoint"), auth.source)
    flamepy_role = auth.string("flamepy_role", "user")
    if flamepy_role not in ("admin", "user", "viewer"):
        raise auth.error("flamepy_role", flamepy_role, "one of: admin, user, viewer")
    user_sessions = auth.string("user_sessions", "own")
    if user_sessions not in USER_SESSIONS:
        raise auth.error("user_sessions", user_sessions, "own (a user sees only its sessions) or all")
    identities = _identities(auth)
    if mode == "mtls" and not identities:
        raise InvalidArgument(f"{auth.source}: {auth.key('mode')} mtls needs {auth.key('identities')}")
    return AuthConfig(
        mode=mode,
        explicit=auth.has("mode"),
        tokens_file=None if tokens_file is None else resolve_dir(tokens_file, base_dir),
        identities=identities,
        flamepy_endpoint=flamepy_endpoint,
        flamepy_role=flamepy_role,
        user_sessions=user_sessions,
    )


def _identities(auth: Section) -> tuple[CertificateIdentity, ...]:
    value = auth.raw("identities")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise auth.error("identities", value, "a list of {subject, role[, name]} mappings")
    found: list[CertificateIdentity] = []
    for index, item in enumerate(value):
        entry = auth.nested(f"identities[{index}]", item)
        entry.check_keys(_IDENTITY_KEYS)
        subject = entry.string("subject", "")
        if not subject:
            raise entry.error("subject", entry.raw("subject"), "the certificate's common name or a SAN")
        if any(known.subject == subject for known in found):
            raise entry.error("subject", subject, "a subject that no other identity has")
        found.append(CertificateIdentity(subject, _role(entry), entry.string("name", subject)))
    return tuple(found)


def _role(entry: Section) -> str:
    role = entry.raw("role")
    if role not in ROLES:
        raise entry.error("role", role, f"one of: {', '.join(ROLES)}")
    return str(role)


def parse_allowlist(
    section: Section, loopback_only: bool, builtins: tuple[str, ...] = BUILTIN_COMMANDS
) -> CommandAllowlist:
    """``allowed_commands`` of ``section``; default anything on loopback, else the ``builtins`` command lines."""
    value = section.raw("allowed_commands")
    if value is None:
        return CommandAllowlist(ANY_COMMAND if loopback_only else builtins)
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise section.error("allowed_commands", value, "a list of globs such as '/usr/bin/python3 *' ('*': anything)")
    return CommandAllowlist(tuple(p.strip() for p in value))


def parse_applications(cluster: Section, loopback_only: bool, builtin_applications: Iterable[str]) -> CommandAllowlist:
    """The registration allowlist; off loopback its default is the commands of the enabled built-ins."""
    applications = cluster.section("applications")
    applications.check_keys(_APPLICATIONS_KEYS)
    builtins = tuple(BUILTIN_APPLICATION_COMMANDS[name] for name in builtin_applications)
    return parse_allowlist(applications, loopback_only, builtins)


def load_tokens(path: Path) -> tuple[TokenEntry, ...]:
    """Read a tokens file::

    tokens:
      - {name: alice, role: admin, token: <at least 16 characters>}
      - {name: node-1, role: node, token_sha256: <hex digest of the token>}
    """
    root = Section.root(load_yaml(path), str(path))
    root.check_keys(("tokens",))
    value = root.raw("tokens")
    if not isinstance(value, list) or not value:
        raise root.error("tokens", value, "a non-empty list of {name, role, token or token_sha256}")
    entries: list[TokenEntry] = []
    for index, item in enumerate(value):
        entry = root.nested(f"tokens[{index}]", item)
        entry.check_keys(_TOKEN_KEYS)
        name = entry.string("name", "")
        if not name:
            raise entry.error("name", entry.raw("name"), "a non-empty name for the audit log")
        entries.append(TokenEntry(name, _role(entry), _digest(entry)))
    if len({e.sha256 for e in entries}) < len(entries):
        raise InvalidArgument(f"{path}: two entries have the same token: give each holder its own")
    return tuple(entries)


def _digest(entry: Section) -> bytes:
    token, digest = entry.raw("token"), entry.raw("token_sha256")
    if (token is None) == (digest is None):
        raise InvalidArgument(f"{entry.source}: {entry.path} needs exactly one of token and token_sha256")
    if token is not None:
        if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_LENGTH:
            # the token itself is never echoed
            raise InvalidArgument(
                f"{entry.source}: invalid {entry.key('token')}: expected a string of at least "
                f"{MIN_TOKEN_LENGTH} characters (e.g. from `openssl rand -hex 32`)"
            )
        return token_digest(token.strip())
    try:
        raw = bytes.fromhex(str(digest))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise entry.error("token_sha256", digest, "64 hex digits (sha256sum of the token)")
    return raw


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_token(
    token: str | None, token_file: str | Path | None, env: Mapping[str, str], source: str, key: str
) -> str | None:
    """A client's token: FLAME_TOKEN, else FLAME_TOKEN_FILE, else ``token``, else ``token_file``."""
    if env.get("FLAME_TOKEN"):
        return env["FLAME_TOKEN"].strip()
    if env.get("FLAME_TOKEN_FILE"):
        return read_token_file(Path(env["FLAME_TOKEN_FILE"]), "environment", "FLAME_TOKEN_FILE")
    if token:
        return token.strip()
    if token_file:
        return read_token_file(Path(token_file).expanduser(), source, key)
    return None


def read_token_file(path: Path, source: str, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidArgument(f"{source}: cannot read {key} {str(path)!r}: {exc.strerror or exc}") from exc
    if not text or "\n" in text:
        raise InvalidArgument(f"{source}: {key} {str(path)!r} must hold one token on one line")
    return text
