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
