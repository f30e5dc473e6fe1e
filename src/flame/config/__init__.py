"""Configuration: frozen dataclasses, loaded once in an entry point and passed down.

Three files, each read as its Flame counterpart is:

- the session manager's :class:`ClusterConfig`, the ``cluster`` section of flame-cluster.yaml;
- the executor manager's :class:`ExecutorManagerConfig`, its ``executor_manager`` section (one
  flame-cluster.yaml can serve both processes);
- the object cache's :class:`CacheConfig`, its ``cache`` section;
- the client's :class:`ClientConfig`, the current context of ~/.flame/flame.yaml (flamepy's file).

Precedence: defaults, then the file, then environment variables (FLAME_ENDPOINT, FLAME_STORAGE,
FLAME_DATA_DIR, FLAME_CACHE_STORAGE, FLAME_SESSION_MANAGER, FLAME_WORK_DIR, FLAME_CA_FILE, FLAME_TOKEN,
FLAME_TOKEN_FILE), then explicit arguments.
Every bad value, unknown key, YAML syntax error or missing file raises
:class:`flame.errors.InvalidArgument` naming the file, the key path, the value and what is accepted.
Sections of Flame's file that we do not use (``cluster.executors.limits``,
``cluster.pprof``, ``cluster.recovery``) are accepted and ignored.
"""

from __future__ import annotations

from flame.config._agent import (
    ExecutorManagerConfig,
    executor_manager_config_from_dict,
    load_executor_manager_config,
    socket_dir,
)
from flame.config._auth import (
    BUILTIN_COMMANDS,
    AuthConfig,
    CertificateIdentity,
    CommandAllowlist,
    TokenEntry,
    command_line,
    load_tokens,
    read_token_file,
    token_digest,
)
from flame.config._cache import (
    CacheConfig,
    SessionManagerAddress,
    cache_config_from_dict,
    load_cache_config,
    parse_cache_storage,
)
from flame.config._client import ClientConfig, load_client_config
from flame.config._cluster import ClusterConfig, TlsConfig, cluster_config_from_dict, load_cluster_config
from flame.config._dashboard import DashboardConfig
from flame.config._endpoint import CacheEndpoint, Endpoint, parse_cache_endpoint, parse_endpoint
from flame.config._provider import KubernetesConfig
from flame.config._values import user_data_dir

__all__ = [
    "BUILTIN_COMMANDS",
    "AuthConfig",
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
