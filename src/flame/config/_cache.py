"""The object cache's config: the ``cache`` section of flame-cluster.yaml, as Flame users write it.

cache:
  endpoint: "grpc://127.0.0.1:9090"     # grpcs:// (or grpc+tls://) serves TLS with cache.tls
  network_interface: "eth0"             # optional: listen on and advertise this interface's IPv4
  storage: "fs:///var/lib/flame/cache"  # or none (memory only)
  max_object_size: "1g"
  eviction: {policy: lru, max_memory: "8G", max_objects: 100000}
  tls: {cert_file: ..., key_file: ..., ca_file: ...}   # ca_file: verify client certificates (auth mtls)
  flamepy_endpoint: "grpc://10.0.0.5:9091"  # auth on: a second listener without credentials, for flamepy
  session_manager: "http://10.0.0.4:8080"   # optional: where the cache asks who owns a session

The cache checks callers as the session manager does, by ``cluster.auth`` in the same file. With
``mode: token`` and ``user_sessions: own`` it asks the session manager whether a user's session is
its own; it finds the session manager by the same file (see :func:`_session_manager`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flame.config._auth import AuthConfig, is_loopback, parse_auth
from flame.config._endpoint import DEFAULT_ENDPOINT, CacheEndpoint, Endpoint, parse_cache_endpoint, parse_endpoint_from
from flame.config._provider import parse_provider
from flame.config._values import ENVIRONMENT, Section, invalid, load_yaml, resolve_dir
from flame.errors import InvalidArgument

DEFAULT_CACHE_ENDPOINT = "grpc://127.0.0.1:9090"
DEFAULT_MAX_OBJECT_SIZE = 1024**3
MAX_OBJECT_SIZE_LIMIT = 2**31 - 1  # an object's bytes are one Arrow binary value
DEFAULT_MAX_MEMORY = 1024**3
_KEYS = (
    "endpoint",
    "network_interface",
    "storage",
    "max_object_size",
    "eviction",
    "tls",
    "flamepy_endpoint",
    "session_manager",
)
_IGNORED = ("pprof",)
_EVICTION_KEYS = ("policy", "max_memory", "max_objects")
_TLS_KEYS = ("cert_file", "key_file", "ca_file")
_STORAGE_ACCEPTED = "none, fs:///absolute/dir or fs://dir/relative/to/the/config/file"
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # a listener on every address -> this host's loopback


@dataclass(frozen=True)
class SessionManagerAddress:
    """Where the cache asks the session manager who owns a session: its Frontend, its flamepy
    listener (None: it has none), the CA that verifies an https one (None: the system's)."""

    endpoint: Endpoint
    #: The setting ``endpoint`` came from, for messages (``cluster.endpoint``, ``cache.session_manager``).
    setting: str
    flamepy_endpoint: Endpoint | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class CacheConfig:
    """``storage`` is ``none`` or ``fs://<absolute dir>``; sizes are bytes."""

    endpoint: CacheEndpoint
    network_interface: str | None
    storage: str
    max_object_size: int
    eviction_policy: str
    max_memory: int
    max_objects: int | None
    cert_file: str | None
    key_file: str | None
    #: The CA whose client certificates the cache accepts (``cluster.auth.mode`` mtls).
    client_ca_file: str | None = None
    #: ``cluster.auth`` of the same file: who may call the cache.
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: With auth on, a second listener that asks for no credentials (flamepy 0.6.0 cannot send any).
    flamepy_endpoint: CacheEndpoint | None = None
    #: With ``mode: token`` and ``user_sessions: own``, whom to ask who owns a session (else None).
    session_manager: SessionManagerAddress | None = None


def load_cache_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, *, default_storage: str = "none"
) -> CacheConfig:
    """The ``cache`` section of a flame-cluster.yaml (``path`` None: defaults), then FLAME_CACHE_STORAGE.

    ``default_storage`` applies when neither the file nor the environment names a storage
    (``flame up`` passes ``fs://<data dir>/cache``).
    """
    env = os.environ if env is None else env
    if path is None:
        return _build({}, "<defaults>", env, None, default_storage)
    path = Path(path)
    return _build(load_yaml(path), str(path), env, path.parent.absolute(), default_storage)


def cache_config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> CacheConfig:
    """A config from a mapping shaped like the file (``{"cache": {...}}``); no env overrides."""
    return _build(data, source, {}, None, "none")


def _build(
    data: object, source: str, env: Mapping[str, str], base_dir: Path | None, default_storage: str
) -> CacheConfig:
    root = Section.root(data, source)
    cache = root.section("cache")
    cache.check_keys(_KEYS, _IGNORED)
    eviction = cache.section("eviction")
    eviction.check_keys(_EVICTION_KEYS)
    text = cache.raw("endpoint") if cache.has("endpoint") else DEFAULT_CACHE_ENDPOINT
    endpoint = parse_cache_endpoint(text, cache.key("endpoint"), source)
    cert_file, key_file, ca_file = _tls(cache)
    if endpoint.tls and cert_file is None:
        raise InvalidArgument(
            f"{source}: {cache.key('endpoint')} {text!r} serves TLS but {cache.key('tls')} is not set: "
            "give tls.cert_file and tls.key_file, or use grpc://"
        )
    if cert_file is not None and not endpoint.tls:
        raise InvalidArgument(
            f"{source}: {cache.key('tls')} is set but {cache.key('endpoint')} {text!r} is plain grpc: "
            "use grpcs:// to serve TLS, or remove the tls section"
        )
    max_object_size = cache.size("max_object_size", DEFAULT_MAX_OBJECT_SIZE)
    if max_object_size > MAX_OBJECT_SIZE_LIMIT:
        raise cache.error(
            "max_object_size", cache.raw("max_object_size"), "a size of at most 2147483647 bytes (2g - 1)"
        )
    policy = eviction.string("policy", "lru")
    if policy not in ("lru", "none"):
        raise eviction.error("policy", policy, "one of: lru, none")
    auth = parse_auth(root.section("cluster"), base_dir)
    flamepy_endpoint = _flamepy_endpoint(cache, auth, source)
    session_manager = _session_manager(root.section("cluster"), cache, auth)
    _check_client_certificates(cache, auth, endpoint, ca_file, source)
    return CacheConfig(
        endpoint=endpoint,
        network_interface=cache.optional_string("network_interface"),
        storage=_storage(cache, env, base_dir, default_storage),
        max_object_size=max_object_size,
        eviction_policy=policy,
        max_memory=eviction.size("max_memory", DEFAULT_MAX_MEMORY),
        max_objects=eviction.optional_integer("max_objects", 1),
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=ca_file if auth.mode == "mtls" else None,
        auth=auth,
        flamepy_endpoint=flamepy_endpoint,
        session_manager=session_manager,
    )


def _session_manager(cluster: Section, cache: Section, auth: AuthConfig) -> SessionManagerAddress | None:
    """Whom the cache asks who owns a session, with ``mode: token`` and ``user_sessions: own``.

    ``cache.session_manager`` if set; else ``cluster.endpoint``, unless the session manager listens
    on every address (0.0.0.0, ::): then the Kubernetes provider's ``session_manager`` (how pods
    reach it) if there is one, else this host's loopback. Its flamepy listener likewise, on the
    same host when it listens on every address.
    """
    if auth.mode != "token" or auth.user_sessions != "own":
        if cache.has("session_manager"):
            raise InvalidArgument(
                f"{cache.source}: {cache.key('session_manager')} is asked only with cluster.auth.mode token and "
                f"user_sessions own (now {auth.mode} and {auth.user_sessions}): remove it"
            )
        return None
    if cache.has("session_manager"):
        setting, text = cache.key("session_manager"), cache.raw("session_manager")
        endpoint = parse_endpoint_from(text, setting, cache.source)
        if endpoint.port == 0 or endpoint.host in _ANY_ADDRESS:
            raise cache.error("session_manager", text, "the address the cache reaches the session manager at")
    else:
        setting = cluster.key("endpoint")
        text = cluster.raw("endpoint") if cluster.has("endpoint") else DEFAULT_ENDPOINT
        endpoint = parse_endpoint_from(text, setting, cluster.source)
        if endpoint.host in _ANY_ADDRESS:
            pods = parse_provider(cluster)
            if pods is not None:
                setting, endpoint = f"{cluster.key('provider')}.kubernetes.session_manager", pods.session_manager
            else:
                setting, endpoint = f"{setting} on this host", replace(endpoint, host=_ANY_ADDRESS[endpoint.host])
    flamepy = auth.flamepy_endpoint
    if flamepy is not None and flamepy.host in _ANY_ADDRESS:
        flamepy = replace(flamepy, host=endpoint.host)
    https = endpoint.tls or (flamepy is not None and flamepy.tls)
    ca_file = cluster.section("tls").optional_string("ca_file") if https else None
    return SessionManagerAddress(endpoint, setting, flamepy, ca_file)


def _flamepy_endpoint(cache: Section, auth: AuthConfig, source: str) -> CacheEndpoint | None:
    if not cache.has("flamepy_endpoint"):
        return None
    if auth.mode == "none":
        raise InvalidArgument(
            f"{source}: {cache.key('flamepy_endpoint')} needs cluster.auth.mode token or mtls "
            "(with none the cache asks nobody for credentials already)"
        )
    endpoint = parse_cache_endpoint(cache.raw("flamepy_endpoint"), cache.key("flamepy_endpoint"), source)
    if endpoint.tls:
        raise cache.error("flamepy_endpoint", cache.raw("flamepy_endpoint"), "a plain grpc://host:port listener")
    return endpoint


def _check_client_certificates(
    cache: Section, auth: AuthConfig, endpoint: CacheEndpoint, ca_file: str | None, source: str
) -> None:
    """With mtls, a cache off loopback must verify client certificates, so it needs TLS and a CA."""
    if auth.mode != "mtls" or (ca_file is not None and endpoint.tls) or is_loopback(endpoint.host):
        return
    raise InvalidArgument(
        f"{source}: cluster.auth.mode is mtls, so the object cache on {endpoint} must check client "
        f"certificates: serve grpcs:// and give {cache.key('tls')}.ca_file (the CA that signs them)"
    )


def _tls(cache: Section) -> tuple[str | None, str | None, str | None]:
    if not cache.has("tls"):
        return None, None, None
    tls = cache.section("tls")
    tls.check_keys(_TLS_KEYS)
    cert_file, key_file = tls.optional_string("cert_file"), tls.optional_string("key_file")
    if cert_file is None or key_file is None:
        given = [name for name in ("cert_file", "key_file") if tls.has(name)]
        raise InvalidArgument(
            f"{tls.source}: {tls.path} needs both cert_file and key_file (given: {', '.join(given) or 'neither'})"
        )
    return cert_file, key_file, tls.optional_string("ca_file")


def _storage(cache: Section, env: Mapping[str, str], base_dir: Path | None, default: str) -> str:
    if env.get("FLAME_CACHE_STORAGE"):
        return parse_cache_storage(env["FLAME_CACHE_STORAGE"], None, ENVIRONMENT, "FLAME_CACHE_STORAGE")
    if not cache.has("storage"):
        return default
    return parse_cache_storage(cache.raw("storage"), base_dir, cache.source, cache.key("storage"))


def parse_cache_storage(value: object, base_dir: Path | None, source: str, key: str) -> str:
    """``none`` or ``fs://DIR`` (``file://DIR`` too) -> ``none`` or ``fs://<absolute DIR>``."""
    if not isinstance(value, str):
        raise invalid(source, key, value, _STORAGE_ACCEPTED)
    text = value.strip()
    if text == "none":
        return text
    scheme, sep, rest = text.partition("://")
    if scheme not in ("fs", "file") or not sep or not rest or "?" in rest or "#" in rest:
        raise invalid(source, key, value, _STORAGE_ACCEPTED)
    return f"fs://{resolve_dir(rest, base_dir)}"
