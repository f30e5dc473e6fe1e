"""The session manager's config: the ``cluster`` section of flame-cluster.yaml, as Flame users write it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame.config._auth import (
    BUILTIN_APPLICATION_COMMANDS,
    AuthConfig,
    CommandAllowlist,
    is_loopback,
    parse_applications,
    parse_auth,
)
from flame.config._dashboard import DashboardConfig, parse_dashboard
from flame.config._endpoint import DEFAULT_ENDPOINT, Endpoint, parse_endpoint_from
from flame.config._provider import KubernetesConfig, parse_provider
from flame.config._values import ENVIRONMENT, Section, invalid, load_yaml, resolve_dir, user_data_dir
from flame.errors import InvalidArgument
from flame.types import ResourceRequirement

POLICIES = ("priority", "fairshare", "proportion", "gang", "drf")
DEFAULT_POLICIES = ("priority", "fairshare")
DEFAULT_SLOT = "cpu=1,mem=1g"
SHIMS = ("host",)
# The applications the cluster registers at start-up (see flame.apps); flmexec runs arbitrary code.
BUILTIN_APPLICATIONS = tuple(BUILTIN_APPLICATION_COMMANDS)

_TOP_KEYS = ("cluster",)
# Sections of the same file that belong to Flame's object cache or to our executor manager.
_TOP_IGNORED = ("cache", "executor_manager")
_CLUSTER_KEYS = (
    "name",
    "endpoint",
    "slot",
    "resreq",
    "policies",
    "storage",
    "schedule_interval",
    "executors",
    "limits",
    "tls",
    "data_dir",
    "provider",
    "dashboard",
    "auth",
    "applications",
    "builtin_applications",
)
# Flame settings with no counterpart here (profiling port, session recovery retries).
_CLUSTER_IGNORED = ("pprof", "recovery")
_EXECUTORS_KEYS = ("shim", "max_bind_failures", "max_task_attempts", "task_timeout")
_EXECUTORS_IGNORED = ("limits",)  # Flame's per-node executor limit: ours is executor_manager.max_executors
_LIMITS_KEYS = ("max_sessions", "max_executors", "max_pending_tasks", "max_task_size", "max_common_data_size")
DEFAULT_MAX_TASK_SIZE = 16 * 1024**2
DEFAULT_MAX_COMMON_DATA_SIZE = 16 * 1024**2
_TLS_KEYS = ("cert_file", "key_file", "ca_file", "backend_port")
_STORAGE_ACCEPTED = (
    "sqlite:///absolute/file.db, sqlite://file/relative/to/data_dir.db, "
    "postgres://user:password@host:port/database (or postgresql://...), memory or none"
)
_POSTGRES_SCHEMES = ("postgres", "postgresql")


@dataclass(frozen=True)
class TlsConfig:
    """The session manager's certificate and key (PEM files) and, optionally, a CA bundle."""

    cert_file: str
    key_file: str
    ca_file: str | None = None
    # With ca_file, executor managers connect here with a client certificate signed by it
    # (mutual TLS); clients keep using the endpoint's port. None: the endpoint's port + 1.
    backend_port: int | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """The session manager's settings.

    ``storage`` is normalised: ``sqlite:///<absolute path>``, ``memory`` or ``none``; a postgres url is
    kept as written (password included: show it only through the storage engine's redacted url).
    ``builtin_applications`` are registered at start-up (an empty list registers none).
    ``max_sessions``, ``max_executors`` and ``max_pending_tasks`` (per session) are None when
    unlimited; ``max_task_size`` (a task's input or output) and ``max_common_data_size`` are bytes.
    """

    name: str
    endpoint: Endpoint
    slot: ResourceRequirement
    policies: tuple[str, ...]
    storage: str
    schedule_interval_ms: int
    shim: str
    max_bind_failures: int
    max_task_attempts: int
    max_sessions: int | None
    max_executors: int | None
    max_pending_tasks: int | None
    task_timeout: float | None
    max_task_size: int
    max_common_data_size: int
    tls: TlsConfig | None
    data_dir: Path
    # cluster.provider: None is "none" (executor managers register themselves); else pods on Kubernetes.
    provider: KubernetesConfig | None = None
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    allowed_commands: CommandAllowlist = field(default_factory=CommandAllowlist)

    @property
    def loopback_only(self) -> bool:
        """Every listener is on a loopback address (then auth none and any command are the defaults)."""
        hosts = [self.endpoint.host]
        if self.auth.flamepy_endpoint is not None:
            hosts.append(self.auth.flamepy_endpoint.host)
        return all(is_loopback(host) for host in hosts)

    builtin_applications: tuple[str, ...] = BUILTIN_APPLICATIONS


def load_cluster_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> ClusterConfig:
    """Load the ``cluster`` section of a flame-cluster.yaml, then apply environment overrides.

    ``path`` None means defaults. ``env`` defaults to ``os.environ``; it is read for FLAME_ENDPOINT,
    FLAME_STORAGE and FLAME_DATA_DIR, and for XDG_DATA_HOME/HOME to find the default data dir.
    """
    env = os.environ if env is None else env
    if path is None:
        return _build({}, "<defaults>", env, base_dir=None)
    path = Path(path)
    return _build(load_yaml(path), str(path), env, base_dir=path.parent.absolute())


def cluster_config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ClusterConfig:
    """Build a config from a mapping shaped like the file (``{"cluster": {...}}``); no env overrides."""
    return _build(data, source, {}, base_dir=None)


def _build(data: object, source: str, env: Mapping[str, str], base_dir: Path | None) -> ClusterConfig:
    root = Section.root(data, source)
    if root.has("security"):
        raise InvalidArgument(
            f"{source}: the top-level 'security' section (Flame's mutual TLS) is not supported yet: "
            "put cert_file, key_file and ca_file under cluster.tls for server-side TLS"
        )
    root.check_keys(_TOP_KEYS, _TOP_IGNORED)
    cluster = root.section("cluster")
    cluster.check_keys(_CLUSTER_KEYS, _CLUSTER_IGNORED)
    executors = cluster.section("executors")
    executors.check_keys(_EXECUTORS_KEYS, _EXECUTORS_IGNORED)
    limits = cluster.section("limits")
    limits.check_keys(_LIMITS_KEYS)

    data_dir = _data_dir(cluster, env, base_dir)
    endpoint, tls = _endpoint_and_tls(cluster, env)
    auth = parse_auth(cluster, base_dir)
    exposed = [e.host for e in (endpoint, auth.flamepy_endpoint) if e is not None and not is_loopback(e.host)]
    loopback = not exposed
    if exposed and not auth.explicit:
        raise InvalidArgument(
            f"{cluster.source}: the session manager would listen on {exposed[0]} (not a loopback address) "
            f"without authentication: set {cluster.key('auth')}.mode to token or mtls, or to none to "
            "accept anyone who reaches the port"
        )
    _check_flamepy_tls(auth, tls, cluster)
    provider = parse_provider(cluster)
    if provider is not None and auth.mode == "token" and provider.token_secret is None:
        raise InvalidArgument(
            f"{cluster.source}: {cluster.key('auth')}.mode is token, so executor-manager pods need a node "
            f"token: set {cluster.key('provider')}.kubernetes.token_secret to a Secret whose key 'token' holds one"
        )
    builtins = cluster.string_list("builtin_applications", BUILTIN_APPLICATIONS, BUILTIN_APPLICATIONS)
    return ClusterConfig(
        name=cluster.string("name", "flame"),
        endpoint=endpoint,
        slot=_slot(cluster),
        policies=cluster.string_list("policies", DEFAULT_POLICIES, POLICIES),
        storage=_storage(cluster, env, data_dir),
        schedule_interval_ms=cluster.integer("schedule_interval", 500, 1, " of milliseconds"),
        shim=_shim(executors),
        max_bind_failures=executors.integer("max_bind_failures", 3, 1),
        max_task_attempts=executors.integer("max_task_attempts", 3, 1),
        task_timeout=_task_timeout(executors),
        max_sessions=limits.optional_integer("max_sessions", 1),
        max_executors=limits.optional_integer("max_executors", 1),
        max_pending_tasks=limits.optional_integer("max_pending_tasks", 1),
        max_task_size=limits.size("max_task_size", DEFAULT_MAX_TASK_SIZE),
        max_common_data_size=limits.size("max_common_data_size", DEFAULT_MAX_COMMON_DATA_SIZE),
        tls=tls,
        data_dir=data_dir,
        provider=provider,
        dashboard=parse_dashboard(cluster, tls is not None, cluster_tokens=_credentials_open_pages(auth, tls)),
        auth=auth,
        allowed_commands=parse_applications(cluster, loopback, builtins),
        builtin_applications=builtins,
    )


def _credentials_open_pages(auth: AuthConfig, tls: TlsConfig | None) -> bool:
    """Whether the cluster's tokens or client certificates can guard the dashboard."""
    return auth.mode == "token" or (auth.mode == "mtls" and tls is not None and tls.ca_file is not None)


def _check_flamepy_tls(auth: AuthConfig, tls: TlsConfig | None, cluster: Section) -> None:
    flamepy = auth.flamepy_endpoint
    if auth.mode == "mtls" and tls is None:
        raise InvalidArgument(f"{cluster.source}: {cluster.key('auth')}.mode mtls needs {cluster.key('tls')}")
    if auth.mode == "mtls" and tls is not None and tls.ca_file is None:
        raise InvalidArgument(
            f"{cluster.source}: {cluster.key('auth')}.mode mtls needs {cluster.key('tls')}.ca_file "
            "(the CA that signs client certificates)"
        )
    if flamepy is not None and flamepy.tls and tls is None:
        raise InvalidArgument(
            f"{cluster.source}: {cluster.key('auth')}.flamepy_endpoint {str(flamepy)!r} uses https but "
            f"{cluster.key('tls')} is not set"
        )


def _task_timeout(executors: Section) -> float | None:
    if not executors.has("task_timeout"):
        return None
    return executors.number("task_timeout", 0.0, 0, inclusive=False, unit="seconds")


def _data_dir(cluster: Section, env: Mapping[str, str], base_dir: Path | None) -> Path:
    if env.get("FLAME_DATA_DIR"):
        return resolve_dir(env["FLAME_DATA_DIR"], None)
    if cluster.has("data_dir"):
        return resolve_dir(cluster.string("data_dir", ""), base_dir)
    return user_data_dir(env)


def _slot(cluster: Section) -> ResourceRequirement:
    if cluster.has("slot") and cluster.has("resreq"):
        raise InvalidArgument(
            f"{cluster.source}: both {cluster.key('slot')} and {cluster.key('resreq')} are set: "
            "they are the same setting (resreq is an alias of slot), keep one"
        )
    name = "resreq" if cluster.has("resreq") else "slot"
    text = cluster.raw(name) if cluster.has(name) else DEFAULT_SLOT
    if not isinstance(text, str):
        raise cluster.error(name, text, "a resource requirement such as cpu=1,mem=1g")
    try:
        return ResourceRequirement.parse(text)
    except InvalidArgument as exc:
        expected = f"a resource requirement such as cpu=1,mem=1g[,gpu=0] ({exc.message})"
        raise cluster.error(name, text, expected) from exc


def _shim(executors: Section) -> str:
    shim = executors.raw("shim")
    if shim is None or shim in SHIMS:
        return "host"
    if shim == "wasm":
        raise InvalidArgument(
            f"{executors.source}: invalid {executors.key('shim')} 'wasm': the wasm shim is not "
            f"supported by Flame for Python; accepted: {', '.join(SHIMS)}"
        )
    raise executors.error("shim", shim, f"one of: {', '.join(SHIMS)}")


def _storage(cluster: Section, env: Mapping[str, str], data_dir: Path) -> str:
    if env.get("FLAME_STORAGE"):
        return parse_storage(env["FLAME_STORAGE"], data_dir, ENVIRONMENT, "FLAME_STORAGE")
    if not cluster.has("storage"):
        return f"sqlite://{data_dir / 'flame.db'}"
    return parse_storage(cluster.raw("storage"), data_dir, cluster.source, cluster.key("storage"))


def parse_storage(value: object, data_dir: Path, source: str, key: str) -> str:
    """Normalise a storage URL; a relative sqlite path is taken relative to ``data_dir``.

    A postgres url is returned as written: libpq reads it (and the PG* environment variables fill in
    what it leaves out), and the storage engine checks it with libpq's own parser when it is opened.
    """
    if not isinstance(value, str):
        raise invalid(source, key, value, _STORAGE_ACCEPTED)
    text = value.strip()
    if text in ("memory", "none"):
        return text
    scheme, sep, rest = text.partition("://")
    if scheme.lower() in _POSTGRES_SCHEMES and sep:
        return text
    shown = _hide_password(value)
    if scheme in ("fs", "file") and sep:
        raise invalid(source, key, shown, f"sqlite://<path> ({scheme}:// is Flame's file storage, not supported here)")
    if scheme != "sqlite" or not sep or not rest or rest.endswith("/") or "?" in rest or "#" in rest:
        raise invalid(source, key, shown, _STORAGE_ACCEPTED)
    return f"sqlite://{resolve_dir(rest, data_dir)}"


def _hide_password(url: str) -> str:
    """``scheme://user:secret@host...`` -> ``scheme://user:***@host...``: a refused url is echoed in errors."""
    return re.sub(r"^([^:/?#]+://[^:/?#@]*:)[^/?#]*@", r"\1***@", url)


def _endpoint_and_tls(cluster: Section, env: Mapping[str, str]) -> tuple[Endpoint, TlsConfig | None]:
    if env.get("FLAME_ENDPOINT"):
        endpoint_key = "FLAME_ENDPOINT"
        endpoint = parse_endpoint_from(env["FLAME_ENDPOINT"], "FLAME_ENDPOINT", ENVIRONMENT)
    else:
        endpoint_key = cluster.key("endpoint")
        text = cluster.raw("endpoint") if cluster.has("endpoint") else DEFAULT_ENDPOINT
        endpoint = parse_endpoint_from(text, endpoint_key, cluster.source)
    tls = _tls(cluster)
    if endpoint.tls and tls is None:
        raise InvalidArgument(
            f"{cluster.source}: {endpoint_key} {str(endpoint)!r} uses https but {cluster.key('tls')} "
            "is not set: give tls.cert_file and tls.key_file, or use http://"
        )
    if tls is not None and not endpoint.tls:
        raise InvalidArgument(
            f"{cluster.source}: {cluster.key('tls')} is set but {endpoint_key} {str(endpoint)!r} "
            "uses http: use https:// to serve TLS, or remove the tls section"
        )
    return endpoint, tls


def _tls(cluster: Section) -> TlsConfig | None:
    if not cluster.has("tls"):
        return None
    tls = cluster.section("tls")
    tls.check_keys(_TLS_KEYS)
    cert_file = tls.optional_string("cert_file")
    key_file = tls.optional_string("key_file")
    if cert_file is None or key_file is None:
        given = [name for name in ("cert_file", "key_file") if tls.has(name)]
        raise InvalidArgument(
            f"{tls.source}: {tls.path} needs both cert_file and key_file (given: {', '.join(given) or 'neither'})"
        )
    ca_file = tls.optional_string("ca_file")
    backend_port = tls.optional_integer("backend_port", 0)
    if backend_port is not None and (ca_file is None or backend_port > 65535):
        raise tls.error(
            "backend_port", backend_port, "a port from 0 to 65535, together with ca_file (it is the mutual TLS port)"
        )
    return TlsConfig(cert_file, key_file, ca_file, backend_port)
