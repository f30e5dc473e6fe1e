"""flame.config: defaults, every key, environment overrides and the messages for bad input."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

import flame.config
from flame.config import (
    CertificateIdentity,
    ClientConfig,
    Endpoint,
    TlsConfig,
    cluster_config_from_dict,
    executor_manager_config_from_dict,
    load_client_config,
    load_cluster_config,
    load_executor_manager_config,
    parse_endpoint,
    socket_dir,
    user_data_dir,
)
from flame.errors import InvalidArgument
from flame.types import ResourceRequirement

GIB = 1024**3


def write(tmp_path: Path, text: str, name: str = "flame-cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidArgument) as info:
        call(*args, **kwargs)
    return str(info.value)


def test_public_api_is_pinned() -> None:
    assert sorted(flame.config.__all__) == [
        "AuthConfig",
        "BUILTIN_COMMANDS",
        "CacheConfig",
        "CacheEndpoint",
        "CertificateIdentity",
        "ClientConfig",
        "ClusterConfig",
        "CommandAllowlist",
        "DashboardConfig",
        "Endpoint",
        "ExecutorManagerConfig",
        "KubernetesConfig",
        "SessionManagerAddress",
        "TlsConfig",
        "TokenEntry",
        "cache_config_from_dict",
        "cluster_config_from_dict",
        "command_line",
        "executor_manager_config_from_dict",
        "load_cache_config",
        "load_client_config",
        "load_cluster_config",
        "load_executor_manager_config",
        "load_tokens",
        "parse_cache_endpoint",
        "parse_cache_storage",
        "parse_endpoint",
        "read_token_file",
        "socket_dir",
        "token_digest",
        "user_data_dir",
    ]
    for name in flame.config.__all__:
        assert getattr(flame.config, name) is not None


# ---------------------------------------------------------------- endpoints and data dir


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080),
        ("https://flame-session-manager:443", "https", "flame-session-manager", 443),
        ("localhost:9000", "http", "localhost", 9000),
        ("localhost", "http", "localhost", 8080),
        ("https://example.com/", "https", "example.com", 8080),
        ("http://[::1]:7000", "http", "::1", 7000),
        ("HTTP://h:0", "http", "h", 0),
    ],
)
def test_parse_endpoint_accepts(text: str, scheme: str, host: str, port: int) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.scheme, endpoint.host, endpoint.port) == (scheme, host, port)
    assert endpoint.tls is (scheme == "https")


def test_endpoint_address_and_url() -> None:
    assert parse_endpoint("https://h:1").address == "h:1"
    assert str(parse_endpoint("h:2")) == "http://h:2"
    assert parse_endpoint("[::1]:3").address == "[::1]:3"
    assert str(Endpoint("http", "::1", 3)) == "http://[::1]:3"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("grpc://h:1", "scheme 'grpc' is not supported"),
        ("h:65536", "port '65536'"),
        ("h:port", "port 'port'"),
        ("http://h:1/api", "path"),
        ("http://:8080", "host is missing"),
        ("::1", "brackets"),
        ("bad host:1", "not a valid host"),
        ("", "non-empty"),
    ],
)
def test_parse_endpoint_refuses(text: str, problem: str) -> None:
    message = refused(parse_endpoint, text, key="cluster.endpoint")
    assert "cluster.endpoint" in message
    assert repr(text) in message
    assert problem in message
    assert "http://host:port, https://host:port or host:port" in message


def test_user_data_dir_follows_xdg(tmp_path: Path) -> None:
    assert user_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "flame"
    home = {"HOME": str(tmp_path)}
    assert user_data_dir(home) == tmp_path / ".local" / "share" / "flame"
    assert user_data_dir({**home, "XDG_DATA_HOME": "relative"}) == tmp_path / ".local/share/flame"


# ---------------------------------------------------------------- cluster config


def test_cluster_defaults(tmp_path: Path) -> None:
    config = load_cluster_config(None, env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.name == "flame"
    assert config.endpoint == Endpoint("http", "127.0.0.1", 8080)
    assert config.slot == ResourceRequirement(cpu=1, memory=GIB)
    assert config.policies == ("priority", "fairshare")
    assert config.storage == f"sqlite://{tmp_path}/flame/flame.db"
    assert config.schedule_interval_ms == 500
    assert config.shim == "host"
    assert (config.max_bind_failures, config.max_task_attempts) == (3, 3)
    assert (config.max_sessions, config.max_executors) == (None, None)
    assert config.tls is None
    assert config.data_dir == tmp_path / "flame"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "other"  # type: ignore[misc]


FULL_CLUSTER = """\
cluster:
  name: prod
  endpoint: "https://flame-session-manager:8443"
  slot: "cpu=2,mem=4g,gpu=1"
  policies: [gang, drf, proportion]
  storage: "sqlite://state/flame.db"
  schedule_interval: 100
  executors:
    shim: host
    max_bind_failures: 5
    max_task_attempts: 7
    limits:
      max_executors: 128
  limits:
    max_sessions: 1000
    max_executors: 10
  tls:
    cert_file: /etc/flame/certs/server.crt
    key_file: /etc/flame/certs/server.key
    ca_file: /etc/flame/certs/ca.crt
  data_dir: data
  pprof: {port: 6060}
  auth:
    mode: mtls
    identities:
      - {subject: alice.example.com, role: admin, name: alice}
      - {subject: node-1, role: node}
    flamepy_endpoint: "http://10.0.0.5:8081"
    flamepy_role: viewer
    user_sessions: all
  applications:
    allowed_commands: ["/usr/bin/python3 -m myapp *", "${FLAME_PYTHON} -m flame.apps.flmping"]
cache:
  endpoint: "grpcs://flame-object-cache:9090"
  eviction: {policy: lru, max_memory: 512M}
executor_manager:
  node_name: node-1
"""


def test_cluster_every_key_is_parsed(tmp_path: Path) -> None:
    config = load_cluster_config(write(tmp_path, FULL_CLUSTER), env={})
    assert config.name == "prod"
    assert config.endpoint == Endpoint("https", "flame-session-manager", 8443)
    assert config.endpoint.tls
    assert config.slot == ResourceRequirement(cpu=2, memory=4 * GIB, gpu=1)
    assert config.policies == ("gang", "drf", "proportion")
    # data_dir is relative to the file's folder, a relative sqlite path relative to data_dir
    assert config.data_dir == tmp_path / "data"
    assert config.storage == f"sqlite://{tmp_path}/data/state/flame.db"
    assert config.schedule_interval_ms == 100
    assert (config.max_bind_failures, config.max_task_attempts) == (5, 7)
    assert (config.max_sessions, config.max_executors) == (1000, 10)
    assert config.tls == TlsConfig(
        "/etc/flame/certs/server.crt", "/etc/flame/certs/server.key", "/etc/flame/certs/ca.crt"
    )
    auth = config.auth
    assert (auth.mode, auth.explicit, auth.flamepy_role, auth.user_sessions) == ("mtls", True, "viewer", "all")
    assert auth.identities == (
        CertificateIdentity("alice.example.com", "admin", "alice"),
        CertificateIdentity("node-1", "node", "node-1"),
    )
    assert auth.flamepy_endpoint == Endpoint("http", "10.0.0.5", 8081)
    assert config.allowed_commands.patterns == ("/usr/bin/python3 -m myapp *", "${FLAME_PYTHON} -m flame.apps.flmping")
    assert not config.loopback_only


def test_cluster_resreq_alias_and_other_storages(tmp_path: Path) -> None:
    base = {"name": "x", "data_dir": str(tmp_path)}
    config = cluster_config_from_dict({"cluster": {**base, "resreq": "cpu=3,mem=512m", "storage": "none"}})
    assert config.slot == ResourceRequirement(cpu=3, memory=512 * 1024**2)
    assert config.storage == "none"
    assert cluster_config_from_dict({"cluster": {**base, "storage": "memory"}}).storage == "memory"
    absolute = cluster_config_from_dict({"cluster": {**base, "storage": "sqlite:///var/f.db"}})
    assert absolute.storage == "sqlite:///var/f.db"


def test_cluster_empty_values_mean_defaults(tmp_path: Path) -> None:
    text = "cluster:\n  schedule_interval:\n  executors:\n  limits:\n  policies:\ncache:\n"
    config = load_cluster_config(write(tmp_path, text), env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.schedule_interval_ms == 500
    assert config.policies == ("priority", "fairshare")
    assert load_cluster_config(write(tmp_path, "", "empty.yaml"), env={}).name == "flame"


def test_cluster_env_overrides_the_file(tmp_path: Path) -> None:
    text = "cluster:\n  endpoint: http://0.0.0.0:9000\n  storage: sqlite://a.db\n  auth: {mode: none}\n"
    path = write(tmp_path, text)
    env = {"FLAME_ENDPOINT": "127.0.0.1:0", "FLAME_DATA_DIR": str(tmp_path / "env")}
    config = load_cluster_config(path, env=env)
    assert config.endpoint == Endpoint("http", "127.0.0.1", 0)
    assert config.data_dir == tmp_path / "env"
    assert config.storage == f"sqlite://{tmp_path}/env/a.db"
    assert load_cluster_config(path, env={**env, "FLAME_STORAGE": "memory"}).storage == "memory"


def test_cluster_env_values_are_validated(tmp_path: Path) -> None:
    message = refused(load_cluster_config, None, env={"FLAME_STORAGE": "fs:///var/lib/flame"})
    assert "environment" in message
    assert "FLAME_STORAGE" in message
    assert "'fs:///var/lib/flame'" in message
    assert "sqlite://" in message
    message = refused(load_cluster_config, None, env={"FLAME_ENDPOINT": "grpc://h:1"})
    assert "FLAME_ENDPOINT" in message
    assert "'grpc://h:1'" in message


BAD_CLUSTER_VALUES = [
    ({"schedule_interval": 0}, "cluster.schedule_interval", "0", "whole number of milliseconds >= 1"),
    ({"schedule_interval": "100"}, "cluster.schedule_interval", "'100'", "whole number"),
    ({"schedule_interval": True}, "cluster.schedule_interval", "True", "whole number"),
    ({"schedule_interval": 1.5}, "cluster.schedule_interval", "1.5", "whole number"),
    ({"name": ""}, "cluster.name", "''", "non-empty string"),
    ({"policies": ["priority", "fifo"]}, "cluster.policies[1]", "'fifo'", "priority, fairshare, proportion"),
    ({"policies": ["gang", "gang"]}, "cluster.policies[1]", "'gang'", "at most once"),
    ({"policies": "priority"}, "cluster.policies", "'priority'", "a list of names"),
    ({"storage": "fs:///var/lib/flame"}, "cluster.storage", "'fs:///var/lib/flame'", "sqlite://"),
    ({"storage": "mysql://db/x"}, "cluster.storage", "'mysql://db/x'", "sqlite:///absolute/file.db"),
    ({"storage": "sqlite://"}, "cluster.storage", "'sqlite://'", "memory or none"),
    ({"storage": "sqlite://state/"}, "cluster.storage", "'sqlite://state/'", "memory or none"),
    ({"storage": "sqlite://f.db?mode=ro"}, "cluster.storage", "'sqlite://f.db?mode=ro'", "memory or none"),
    ({"storage": 5}, "cluster.storage", "5", "sqlite://"),
    ({"endpoint": "ftp://h:1"}, "cluster.endpoint", "'ftp://h:1'", "http://host:port"),
    ({"endpoint": "h:70000"}, "cluster.endpoint", "'h:70000'", "0-65535"),
    ({"slot": "cpu=x"}, "cluster.slot", "'cpu=x'", "cpu=1,mem=1g"),
    ({"slot": "disk=1"}, "cluster.slot", "'disk=1'", "accepted keys are cpu, mem"),
    ({"resreq": 4}, "cluster.resreq", "4", "cpu=1,mem=1g"),
    ({"executors": {"shim": "docker"}}, "cluster.executors.shim", "'docker'", "one of: host"),
    ({"executors": {"shim": "wasm"}}, "cluster.executors.shim", "'wasm'", "not supported"),
    ({"executors": {"max_bind_failures": 0}}, "cluster.executors.max_bind_failures", "0", ">= 1"),
    ({"executors": {"max_task_attempts": "3"}}, "cluster.executors.max_task_attempts", "'3'", ">= 1"),
    ({"limits": {"max_sessions": 0}}, "cluster.limits.max_sessions", "0", "whole number >= 1"),
    ({"limits": {"max_executors": -1}}, "cluster.limits.max_executors", "-1", "whole number >= 1"),
    ({"limits": 10}, "cluster.limits", "10", "a mapping"),
    ({"data_dir": 3}, "cluster.data_dir", "3", "non-empty string"),
    ({"builtin_applications": ["flmping", "flmpong"]}, "cluster.builtin_applications[1]", "'flmpong'", "flmexec"),
    ({"builtin_applications": "flmexec"}, "cluster.builtin_applications", "'flmexec'", "a list of names"),
]


@pytest.mark.parametrize(("cluster", "key", "value", "accepted"), BAD_CLUSTER_VALUES)
def test_cluster_bad_values_are_refused(
    tmp_path: Path, cluster: dict[str, Any], key: str, value: str, accepted: str
) -> None:
    path = write(tmp_path, yaml.safe_dump({"cluster": cluster}))
    message = refused(load_cluster_config, path, env={})
    assert str(path) in message
    assert key in message
    assert value in message
    assert accepted in message


@pytest.mark.parametrize(
    ("data", "unknown", "known"),
    [
        (
            {"clusters": {}},
            "'clusters' (did you mean 'cluster'?)",
            "known keys at the top level: cluster (accepted and ignored: cache, executor_manager)",
        ),
        (
            {"cluster": {"schedule_intervall": 5}},
            "'cluster.schedule_intervall' (did you mean 'schedule_interval'?)",
            "known keys in cluster: applications, auth, builtin_applications, dashboard, data_dir, endpoint,"
            " executors, limits, name, policies, provider, resreq, schedule_interval, slot, storage, tls",
        ),
        (
            {"cluster": {"executors": {"max_bind_failure": 1}}},
            "'cluster.executors.max_bind_failure'",
            "known keys in cluster.executors: max_bind_failures, max_task_attempts, shim, task_timeout",
        ),
        (
            {"cluster": {"limits": {"max_session": 1}}},
            "'cluster.limits.max_session'",
            "max_common_data_size, max_executors, max_pending_tasks, max_sessions, max_task_size",
        ),
        (
            {"cluster": {"tls": {"cert": "a", "cert_file": "a", "key_file": "b"}}},
            "'cluster.tls.cert'",
            "ca_file, cert_file, key_file",
        ),
    ],
)
def test_cluster_unknown_keys_are_refused(data: dict[str, Any], unknown: str, known: str) -> None:
    message = refused(cluster_config_from_dict, data, source="test.yaml")
    assert message.startswith("test.yaml: unknown key ")
    assert unknown in message
    assert known in message


def test_cluster_slot_and_resreq_together_are_refused() -> None:
    message = refused(cluster_config_from_dict, {"cluster": {"slot": "cpu=1", "resreq": "cpu=2"}})
    assert "cluster.slot" in message
    assert "cluster.resreq" in message
    assert "alias" in message


def test_cluster_tls_needs_cert_and_key_and_https() -> None:
    half = {"endpoint": "https://h:1", "tls": {"cert_file": "/c.crt", "ca_file": "/ca.crt"}}
    message = refused(cluster_config_from_dict, {"cluster": half})
    assert "cluster.tls needs both cert_file and key_file (given: cert_file)" in message
    tls = {"cert_file": "/c.crt", "key_file": "/c.key"}
    message = refused(cluster_config_from_dict, {"cluster": {"endpoint": "http://h:1", "tls": tls}})
    assert "'http://h:1' uses http" in message
    message = refused(cluster_config_from_dict, {"cluster": {"endpoint": "https://h:1"}})
    assert "uses https but cluster.tls is not set" in message
    config = cluster_config_from_dict({"cluster": {"endpoint": "https://h:1", "tls": tls, "auth": {"mode": "none"}}})
    assert config.tls == TlsConfig("/c.crt", "/c.key", None)


def test_cluster_security_section_is_refused_with_a_hint() -> None:
    message = refused(cluster_config_from_dict, {"security": {"trust_domain": "x"}, "cluster": {}})
    assert "security" in message
    assert "cluster.tls" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\n  name: flame\n  policies: [priority\n  storage: none\n")
    message = refused(load_cluster_config, path, env={})
    assert str(path) in message
    assert "invalid YAML at line 4" in message


def test_yaml_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster:\n  schedule_interval: 1\n  schedule_interval: 2\n")
    message = refused(load_cluster_config, path, env={})
    assert "line 3" in message
    assert "duplicate key 'schedule_interval'" in message


def test_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = refused(load_cluster_config, write(tmp_path, "- cluster\n"), env={})
    assert "expected a mapping" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for load in (load_cluster_config, load_executor_manager_config, load_client_config):
        message = refused(load, missing, env={})
        assert f"config file {str(missing)!r} does not exist" in message


# ---------------------------------------------------------------- executor manager config


def test_executor_manager_defaults(tmp_path: Path) -> None:
    config = load_executor_manager_config(None, env={"XDG_DATA_HOME": str(tmp_path)})
    assert config.session_manager == Endpoint("http", "127.0.0.1", 8080)
    assert config.node_name == socket.gethostname()
    assert 1 <= config.capacity.cpu <= (os.cpu_count() or 1)
    assert config.capacity.memory > 0
    assert config.capacity.gpu == 0
    assert config.max_executors == config.capacity.cpu
    assert config.work_dir == tmp_path / "flame" / "executors"
    assert config.heartbeat_interval_ms == 1000
    assert (config.service_start_timeout, config.stop_grace) == (30.0, 5.0)
    assert config.warm_services is True


def test_one_file_serves_both_managers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FULL_CLUSTER.replace(
            "executor_manager:\n  node_name: node-1\n",
            """executor_manager:
  session_manager: "https://flame-session-manager:8443"
  node_name: node-1
  capacity: "cpu=4,mem=8g,gpu=1"
  max_executors: 8
  work_dir: work
  heartbeat_interval: 250
  service_start_timeout: 2.5
  stop_grace: 0
  warm_services: false
""",
        ),
    )
    config = load_executor_manager_config(path, env={})
    assert config.session_manager == Endpoint("https", "flame-session-manager", 8443)
    assert config.node_name == "node-1"
    assert config.capacity == ResourceRequirement(cpu=4, memory=8 * GIB, gpu=1)
    assert config.max_executors == 8
    assert config.work_dir == tmp_path / "work"
    assert config.heartbeat_interval_ms == 250
    assert (config.service_start_timeout, config.stop_grace) == (2.5, 0.0)
    assert config.warm_services is False
    assert load_cluster_config(path, env={}).name == "prod"


def test_executor_manager_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "executor_manager:\n  session_manager: h:1\n  work_dir: /w\n")
    env = {"FLAME_SESSION_MANAGER": "https://sm:9", "FLAME_WORK_DIR": str(tmp_path / "w")}
    config = load_executor_manager_config(path, env=env)
    assert config.session_manager == Endpoint("https", "sm", 9)
    assert config.work_dir == tmp_path / "w"


@pytest.mark.parametrize(
    ("section", "key", "value", "accepted"),
    [
        ({"capacity": "cpu=0,mem=1g"}, "executor_manager.capacity", "'cpu=0,mem=1g'", "cpu >= 1 and mem > 0"),
        ({"capacity": "cpu=4"}, "executor_manager.capacity", "'cpu=4'", "cpu >= 1 and mem > 0"),
        ({"capacity": "cpu=4,mem=lots"}, "executor_manager.capacity", "'cpu=4,mem=lots'", "invalid memory"),
        ({"max_executors": 0}, "executor_manager.max_executors", "0", "whole number >= 1"),
        ({"heartbeat_interval": 0}, "executor_manager.heartbeat_interval", "0", "milliseconds >= 1"),
        ({"service_start_timeout": 0}, "executor_manager.service_start_timeout", "0", "seconds > 0"),
        ({"service_start_timeout": "30"}, "executor_manager.service_start_timeout", "'30'", "seconds > 0"),
        ({"service_start_timeout": float("nan")}, "executor_manager.service_start_timeout", "nan", "> 0"),
        ({"stop_grace": -1}, "executor_manager.stop_grace", "-1", "seconds >= 0"),
        ({"session_manager": "h:0"}, "executor_manager.session_manager", "'h:0'", "port 0 cannot"),
        ({"session_manager": "tcp://h:1"}, "executor_manager.session_manager", "'tcp://h:1'", "https://"),
        ({"node_name": ""}, "executor_manager.node_name", "''", "non-empty string"),
        ({"work_dir": ["a"]}, "executor_manager.work_dir", "['a']", "non-empty string"),
        ({"warm_services": "yes"}, "executor_manager.warm_services", "'yes'", "true or false"),
    ],
)
def test_executor_manager_bad_values_are_refused(section: dict[str, Any], key: str, value: str, accepted: str) -> None:
    message = refused(executor_manager_config_from_dict, {"executor_manager": section}, source="em.yaml")
    assert message.startswith("em.yaml: ")
    assert key in message
    assert value in message
    assert accepted in message


def test_executor_manager_unknown_keys_are_refused() -> None:
    message = refused(executor_manager_config_from_dict, {"executor_manger": {}})
    assert "did you mean 'executor_manager'?" in message
    message = refused(executor_manager_config_from_dict, {"executor_manager": {"workdir": "/w"}})
    assert "'executor_manager.workdir' (did you mean 'work_dir'?)" in message
    assert "heartbeat_interval, max_executors, metrics_port, node_name" in message


def test_socket_dir_stays_short(tmp_path: Path) -> None:
    short = Path("/srv/flame")
    assert socket_dir(short) == short / "s"
    # the longest work_dir whose sockets fit: <dir>/s/<32 chars>.sock is exactly 100 bytes
    fits = Path("/" + "a" * (100 - len("/s/") - 37 - 1))
    assert len(str(fits / "s" / ("x" * 32 + ".sock"))) == 100
    assert socket_dir(fits) == fits / "s"
    too_long = Path(str(fits) + "b")
    fallback = socket_dir(too_long)
    assert fallback.parent == Path("/tmp")
    assert fallback.name.startswith(f"flame-{os.getuid()}-")
    assert len(str(fallback / ("x" * 32 + ".sock"))) <= 100
    assert socket_dir(too_long) == fallback
    assert socket_dir(Path(str(fits) + "c")) != fallback
    # relative work dirs are made absolute: a service runs in a different working directory
    assert socket_dir("rel").is_absolute()
    config = executor_manager_config_from_dict({"executor_manager": {"work_dir": str(too_long)}})
    assert config.socket_dir == fallback


# ---------------------------------------------------------------- client config

CLIENT = """\
current-context: prod
contexts:
  - name: local
    cluster:
      endpoint: "http://127.0.0.1:8080"
  - name: prod
    cluster:
      endpoint: "https://flame.example.com:8443"
      tls: {ca_file: /etc/flame/ca.crt}
    cache:
      endpoint: "grpcs://cache:9090"
    package:
      storage: "file:///var/lib/flame/packages"
    runner:
      template: flmrun
"""


def test_client_missing_default_file_means_defaults(tmp_path: Path) -> None:
    config = load_client_config(env={"HOME": str(tmp_path)})
    assert config == ClientConfig(Endpoint("http", "127.0.0.1", 8080), None)


def test_client_reads_the_current_context(tmp_path: Path) -> None:
    (tmp_path / ".flame").mkdir()
    write(tmp_path / ".flame", CLIENT, "flame.yaml")
    config = load_client_config(env={"HOME": str(tmp_path)})
    assert config == ClientConfig(
        Endpoint("https", "flame.example.com", 8443), "/etc/flame/ca.crt", cache_endpoint="grpcs://cache:9090"
    )
    local = load_client_config(write(tmp_path, CLIENT.replace("prod\ncontexts", "local\ncontexts")), env={})
    assert local == ClientConfig(Endpoint("http", "127.0.0.1", 8080), None)


def test_client_overrides_env_then_argument(tmp_path: Path) -> None:
    path = write(tmp_path, CLIENT)
    env = {"FLAME_ENDPOINT": "http://other:1", "FLAME_CA_FILE": "/env/ca.crt", "FLAME_CACHE_ENDPOINT": "grpc://c:7"}
    config = load_client_config(path, env=env)
    assert config == ClientConfig(Endpoint("http", "other", 1), "/env/ca.crt", cache_endpoint="grpc://c:7")
    assert load_client_config(path, env=env, endpoint="arg:2").endpoint == Endpoint("http", "arg", 2)
    endpoint = Endpoint("https", "e", 3)
    assert load_client_config(path, env=env, endpoint=endpoint).endpoint == endpoint
    message = refused(load_client_config, path, env={"FLAME_ENDPOINT": "ftp://x"})
    assert "environment: invalid FLAME_ENDPOINT 'ftp://x'" in message
    message = refused(load_client_config, path, env={"FLAME_CACHE_ENDPOINT": "http://c:1"})
    assert "invalid FLAME_CACHE_ENDPOINT 'http://c:1': expected grpc://host:port or grpcs://host:port" in message


def test_client_current_context_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, CLIENT.replace("current-context: prod", "current-context: staging"))
    message = refused(load_client_config, path, env={})
    assert str(path) in message
    assert "current-context 'staging'" in message
    assert "'local', 'prod'" in message
    path = write(tmp_path, CLIENT.replace("current-context: prod\n", ""))
    assert "current-context None" in refused(load_client_config, path, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("current-context: a\ncontexts:\n  - name: a\n  - name: a\n", "contexts[1].name 'a'"),
        ("current-context: a\ncontexts:\n  - cluster: {}\n", "contexts[0].name None"),
        (
            "current-context: a\ncontexts:\n  - name: a\n    cluster: {endpont: h}\n",
            "'contexts[0].cluster.endpont' (did you mean 'endpoint'?)",
        ),
        (
            "current-context: a\ncontexts:\n  - name: a\n    cluster: {endpoint: 'h:x'}\n",
            "contexts[0].cluster.endpoint 'h:x'",
        ),
        ("current-context: a\ncontexts: {a: 1}\n", "invalid contexts {'a': 1}: expected a list"),
        ("current_context: a\n", "did you mean 'current-context'?"),
    ],
)
def test_client_bad_files_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text, "flame.yaml")
    message = refused(load_client_config, path, env={})
    assert str(path) in message
    assert expected in message


def test_limits_sizes_and_counts() -> None:
    config = cluster_config_from_dict(
        {"cluster": {"limits": {"max_task_size": "2m", "max_common_data_size": 1024, "max_pending_tasks": 50}}}
    )
    assert (config.max_task_size, config.max_common_data_size, config.max_pending_tasks) == (2 * 1024**2, 1024, 50)
    defaults = cluster_config_from_dict({})
    assert defaults.max_task_size == 16 * 1024**2 and defaults.max_pending_tasks is None
    with pytest.raises(InvalidArgument, match=r"cluster\.limits\.max_task_size.*'lots'.*16m"):
        cluster_config_from_dict({"cluster": {"limits": {"max_task_size": "lots"}}})
    with pytest.raises(InvalidArgument, match=r"cluster\.limits\.max_pending_tasks"):
        cluster_config_from_dict({"cluster": {"limits": {"max_pending_tasks": 0}}})


def test_executor_manager_metrics_port() -> None:
    assert executor_manager_config_from_dict({}).metrics_port is None
    assert executor_manager_config_from_dict({"executor_manager": {"metrics_port": 0}}).metrics_port == 0
    message = refused(executor_manager_config_from_dict, {"executor_manager": {"metrics_port": 99999}})
    assert "invalid executor_manager.metrics_port 99999: expected a port from 0 to 65535" in message
