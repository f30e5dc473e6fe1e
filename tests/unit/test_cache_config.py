"""The cache section of flame-cluster.yaml: every key, and bad values refused with file, key, value."""

from __future__ import annotations

from pathlib import Path

import pytest

from flame.config import CacheEndpoint, cache_config_from_dict, load_cache_config
from flame.errors import InvalidArgument

FULL = """\
cluster:
  name: flame
cache:
  endpoint: "grpcs://0.0.0.0:9191"
  network_interface: "eth0"
  storage: "fs://cache-data"
  max_object_size: 64m
  eviction: {policy: lru, max_memory: 8G, max_objects: 1000}
  tls: {cert_file: /etc/c.crt, key_file: /etc/c.key}
  pprof: {port: 6061}
"""


def test_every_key_of_flames_cache_section(tmp_path: Path) -> None:
    path = tmp_path / "flame-cluster.yaml"
    path.write_text(FULL)
    config = load_cache_config(path, env={})
    assert config.endpoint == CacheEndpoint("0.0.0.0", 9191, tls=True)
    assert config.endpoint.location == "grpc+tls://0.0.0.0:9191"
    assert config.network_interface == "eth0"
    assert config.storage == f"fs://{tmp_path / 'cache-data'}"  # relative to the file
    assert (config.max_object_size, config.max_memory, config.max_objects) == (64 * 1024**2, 8 * 1024**3, 1000)
    assert (config.cert_file, config.key_file) == ("/etc/c.crt", "/etc/c.key")
    assert load_cache_config(path, env={"FLAME_CACHE_STORAGE": "none"}).storage == "none"


def test_defaults_are_flames() -> None:
    config = load_cache_config(None, env={})
    assert str(config.endpoint) == "grpc://127.0.0.1:9090"
    assert (config.storage, config.eviction_policy, config.max_memory) == ("none", "lru", 1024**3)
    assert cache_config_from_dict({"cache": {"endpoint": "grpc://h"}}).endpoint.port == 9090


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"endpoint": "http2://h:1"}, "<dict>: invalid cache.endpoint 'http2://h:1': expected grpc://host:port"),
        ({"endpoint": "grpc://h:99999"}, "invalid cache.endpoint 'grpc://h:99999'"),
        ({"storage": "s3://b"}, "invalid cache.storage 's3://b': expected none, fs:///absolute/dir"),
        ({"eviction": {"policy": "lfu"}}, "invalid cache.eviction.policy 'lfu': expected one of: lru, none"),
        ({"eviction": {"max_memory": "lots"}}, "invalid cache.eviction.max_memory 'lots'"),
        ({"eviction": {"max_objects": 0}}, "invalid cache.eviction.max_objects 0: expected a whole number >= 1"),
        ({"max_object_size": "3g"}, "invalid cache.max_object_size '3g': expected a size of at most 2147483647"),
        ({"endpoint": "grpcs://h:1"}, "serves TLS but cache.tls is not set"),
        ({"tls": {"cert_file": "c", "key_file": "k"}}, "cache.tls is set but cache.endpoint"),
        ({"tls": {"cert_file": "c"}}, "cache.tls needs both cert_file and key_file"),
        ({"evictoin": {}}, "unknown key 'cache.evictoin' (did you mean 'eviction'?)"),
    ],
)
def test_bad_values_are_refused_with_key_value_and_what_is_accepted(section: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        cache_config_from_dict({"cache": section})
    assert expected in info.value.message


def _owned(cluster: dict[str, object], auth: dict[str, object] | None = None, **cache: object) -> dict[str, object]:
    """A file with token auth and ``user_sessions: own`` (the default): the cache asks the session manager."""
    auth = {"mode": "token", "tokens_file": "/etc/flame/tokens.yaml", **(auth or {})}
    return {"cluster": {**cluster, "auth": auth}, "cache": cache}


def test_the_cache_asks_the_session_manager_the_file_names() -> None:
    found = cache_config_from_dict(_owned({"endpoint": "http://10.0.0.4:8080"})).session_manager
    assert found is not None
    assert (str(found.endpoint), found.setting, found.flamepy_endpoint, found.ca_file) == (
        "http://10.0.0.4:8080",
        "cluster.endpoint",
        None,
        None,
    )
    default = cache_config_from_dict(_owned({})).session_manager
    assert default is not None and str(default.endpoint) == "http://127.0.0.1:8080"


def test_a_session_manager_on_every_address_is_asked_where_it_can_be_reached() -> None:
    here = cache_config_from_dict(_owned({"endpoint": "http://0.0.0.0:8080"})).session_manager
    assert here is not None and (str(here.endpoint), here.setting) == (
        "http://127.0.0.1:8080",
        "cluster.endpoint on this host",
    )
    pods = {"kubernetes": {"session_manager": "http://flame-session-manager.flame.svc:8080"}}
    in_kubernetes = cache_config_from_dict(_owned({"endpoint": "http://0.0.0.0:8080", "provider": pods}))
    assert in_kubernetes.session_manager is not None
    assert str(in_kubernetes.session_manager.endpoint) == "http://flame-session-manager.flame.svc:8080"
    assert in_kubernetes.session_manager.setting == "cluster.provider.kubernetes.session_manager"
    flamepy = {"flamepy_endpoint": "http://0.0.0.0:8081"}
    both = cache_config_from_dict(_owned({"endpoint": "http://10.0.0.4:8080"}, flamepy)).session_manager
    assert both is not None and str(both.flamepy_endpoint) == "http://10.0.0.4:8081"  # beside the Frontend


def test_cache_session_manager_overrides_and_https_is_verified_with_the_clusters_ca() -> None:
    tls = {"cert_file": "/etc/s.crt", "key_file": "/etc/s.key", "ca_file": "/etc/ca.crt"}
    config = cache_config_from_dict(
        _owned({"endpoint": "https://0.0.0.0:8443", "tls": tls}, session_manager="https://sm.example:8443")
    )
    assert config.session_manager is not None
    assert (str(config.session_manager.endpoint), config.session_manager.setting) == (
        "https://sm.example:8443",
        "cache.session_manager",
    )
    assert config.session_manager.ca_file == "/etc/ca.crt"


def test_without_token_auth_and_own_sessions_the_cache_asks_no_one() -> None:
    assert cache_config_from_dict({"cache": {}}).session_manager is None
    shared = _owned({}, {"user_sessions": "all"})
    assert cache_config_from_dict(shared).session_manager is None


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"cache": {"session_manager": "http://sm:8080"}},
            "cache.session_manager is asked only with cluster.auth.mode token and user_sessions own "
            "(now none and own): remove it",
        ),
        (_owned({}, session_manager="grpc://sm:8080"), "invalid cache.session_manager 'grpc://sm:8080'"),
        (
            _owned({}, session_manager="http://0.0.0.0:8080"),
            "invalid cache.session_manager 'http://0.0.0.0:8080': expected the address the cache reaches",
        ),
        (_owned({}, session_manager="http://sm:0"), "invalid cache.session_manager 'http://sm:0'"),
        (_owned({"endpoint": "ftp://sm"}), "invalid cluster.endpoint 'ftp://sm'"),
    ],
)
def test_bad_session_manager_addresses_are_refused_with_what_is_accepted(
    config: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        cache_config_from_dict(config)
    assert expected in info.value.message
