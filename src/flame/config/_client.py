"""The client's config: ~/.flame/flame.yaml, read the way flamepy reads it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from flame.config._auth import read_token
from flame.config._endpoint import DEFAULT_ENDPOINT, Endpoint, parse_endpoint_from
from flame.config._values import ENVIRONMENT, Section, home_dir, load_yaml
from flame.errors import InvalidArgument

_TOP_KEYS = ("current-context", "contexts")
_CONTEXT_KEYS = ("name", "cluster", "cache")
_CONTEXT_IGNORED = ("package", "runner")  # flamepy's packaging and runner
_CACHE_KEYS = ("endpoint", "tls")
_CACHE_IGNORED = ("storage",)  # flamepy's client-side write-through directory
_CACHE_TLS_KEYS = ("ca_file",)
_CLUSTER_KEYS = ("endpoint", "tls", "token", "token_file")
_TLS_KEYS = ("ca_file", "cert_file", "key_file")


@dataclass(frozen=True)
class ClientConfig:
    """Where a client connects; ``ca_file`` verifies an https server (None: the system's CAs);
    ``token`` is the bearer token sent with every call (None: none)."""

    endpoint: Endpoint
    ca_file: str | None = None
    token: str | None = field(default=None, repr=False)
    # A client certificate and its key (PEM files), for a cluster with mutual TLS (cluster.auth.mode mtls).
    cert_file: str | None = None
    key_file: str | None = None
    # The object cache (flamepy's cache.endpoint, grpc://host:port); None: FLAME_CACHE_ENDPOINT or
    # flamepy's default grpc://127.0.0.1:9090. cache_ca_file defaults to ca_file.
    cache_endpoint: str | None = None
    cache_ca_file: str | None = None


def load_client_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    endpoint: str | Endpoint | None = None,
) -> ClientConfig:
    """Load the current context of a flamepy-style config file.

    ``path`` None means ~/.flame/flame.yaml, which may be missing (then defaults apply); an explicit
    path must exist. FLAME_ENDPOINT, FLAME_CA_FILE and FLAME_TOKEN (or FLAME_TOKEN_FILE) in ``env``
    (default ``os.environ``) override the file, and an ``endpoint`` argument overrides everything.
    """
    env = os.environ if env is None else env
    if path is None:
        default = home_dir(env) / ".flame" / "flame.yaml"
        source = str(default)
        data = load_yaml(default) if default.exists() else {}
    else:
        source = str(path)
        data = load_yaml(Path(path))
    config = _from_file(Section.root(data, source), env)

    if env.get("FLAME_ENDPOINT"):
        config = replace(config, endpoint=parse_endpoint_from(env["FLAME_ENDPOINT"], "FLAME_ENDPOINT", ENVIRONMENT))
    if env.get("FLAME_CA_FILE"):
        config = replace(config, ca_file=env["FLAME_CA_FILE"])
    if env.get("FLAME_CERT_FILE") or env.get("FLAME_KEY_FILE"):
        config = replace(config, cert_file=env.get("FLAME_CERT_FILE"), key_file=env.get("FLAME_KEY_FILE"))
    if (config.cert_file is None) != (config.key_file is None):
        raise InvalidArgument(
            "a client certificate needs its key: give both tls.cert_file and tls.key_file "
            "(or FLAME_CERT_FILE and FLAME_KEY_FILE), or neither"
        )
    if env.get("FLAME_CACHE_ENDPOINT"):
        config = replace(config, cache_endpoint=_cache_endpoint(env["FLAME_CACHE_ENDPOINT"], "FLAME_CACHE_ENDPOINT"))
    if isinstance(endpoint, Endpoint):
        config = replace(config, endpoint=endpoint)
    elif endpoint is not None:
        config = replace(config, endpoint=parse_endpoint_from(endpoint, "endpoint", None))
    if config.endpoint.port == 0:
        raise InvalidArgument(f"invalid client endpoint {str(config.endpoint)!r}: port 0 cannot be connected to")
    return config


def _from_file(root: Section, env: Mapping[str, str]) -> ClientConfig:
    root.check_keys(_TOP_KEYS)
    contexts = root.raw("contexts")
    if contexts is None:
        contexts = []
    if not isinstance(contexts, list):
        raise root.error("contexts", contexts, "a list of contexts, each with a name and a cluster")
    parsed: dict[str, tuple[ClientConfig, Section]] = {}
    for index, item in enumerate(contexts):
        name, config, cluster = _context(root.nested(f"contexts[{index}]", item))
        if name in parsed:
            raise root.error(f"contexts[{index}].name", name, "a name that no other context has")
        parsed[name] = config, cluster

    current = root.raw("current-context")
    if current is None and not parsed:
        return ClientConfig(_default_endpoint(), token=read_token(None, None, env, root.source, "token"))
    names = ", ".join(repr(name) for name in parsed) or "none defined"
    if not isinstance(current, str) or current not in parsed:
        raise root.error("current-context", current, f"the name of one of the contexts ({names})")
    config, cluster = parsed[current]
    # Only the current context's token file is read: another context's may live elsewhere.
    token_file = cluster.optional_string("token_file")
    token = read_token(cluster.optional_string("token"), token_file, env, cluster.source, cluster.key("token_file"))
    return replace(config, token=token)


def _context(context: Section) -> tuple[str, ClientConfig, Section]:
    context.check_keys(_CONTEXT_KEYS, _CONTEXT_IGNORED)
    name = context.string("name", "")
    if not name:
        raise context.error("name", context.raw("name"), "a non-empty string naming the context")
    cluster = context.section("cluster")
    cluster.check_keys(_CLUSTER_KEYS)
    tls = cluster.section("tls")
    tls.check_keys(_TLS_KEYS)
    if cluster.has("endpoint"):
        endpoint = parse_endpoint_from(cluster.raw("endpoint"), cluster.key("endpoint"), cluster.source)
    else:
        endpoint = _default_endpoint()
    if cluster.has("token") and cluster.has("token_file"):
        raise InvalidArgument(f"{cluster.source}: {cluster.path} has both token and token_file: keep one")
    cluster.optional_string("token")  # a non-empty string if given
    cluster.optional_string("token_file")
    cache = context.section("cache")
    cache.check_keys(_CACHE_KEYS, _CACHE_IGNORED)
    cache_tls = cache.section("tls")
    cache_tls.check_keys(_CACHE_TLS_KEYS)
    cache_endpoint = None
    if cache.has("endpoint"):
        cache_endpoint = _cache_endpoint(cache.raw("endpoint"), f"{cache.source}: {cache.key('endpoint')}")
    config = ClientConfig(
        endpoint,
        tls.optional_string("ca_file"),
        cert_file=tls.optional_string("cert_file"),
        key_file=tls.optional_string("key_file"),
        cache_endpoint=cache_endpoint,
        cache_ca_file=cache_tls.optional_string("ca_file"),
    )
    return name, config, cluster


def _cache_endpoint(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.startswith(("grpc://", "grpcs://", "grpc+tls://")):
        raise InvalidArgument(
            f"invalid {where} {text!r}: expected grpc://host:port or grpcs://host:port (the object cache)"
        )
    return text.strip()


def _default_endpoint() -> Endpoint:
    return parse_endpoint_from(DEFAULT_ENDPOINT, "endpoint", None)
