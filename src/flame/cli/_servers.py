"""The commands that run server processes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from flame.cli._runtime import settle_gc, without_numpy
from flame.config import (
    CacheConfig,
    ClusterConfig,
    ExecutorManagerConfig,
    load_cache_config,
    load_cluster_config,
    load_executor_manager_config,
    parse_cache_endpoint,
    parse_cache_storage,
)
from flame.errors import InvalidArgument

if TYPE_CHECKING:
    from flame.executor_manager import AgentSettings
    from flame.executor_manager.shims import WarmPool
    from flame.types import ResourceRequirement

_CLUSTER_FLAGS = {"endpoint": "FLAME_ENDPOINT", "data_dir": "FLAME_DATA_DIR", "storage": "FLAME_STORAGE"}
_AGENT_FLAGS = {
    "session_manager": "FLAME_SESSION_MANAGER",
    "work_dir": "FLAME_WORK_DIR",
    "token_file": "FLAME_TOKEN_FILE",
}


def _env(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: str(getattr(args, attr)) for attr, name in flags.items() if getattr(args, attr, None)})
    return env


def _dashboard_on_by_default(config: ClusterConfig) -> ClusterConfig:
    """The commands serve the dashboard unless cluster.dashboard.enabled says false."""
    if config.dashboard.enabled is not None:
        return config
    return dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, enabled=True))


def _cache_config(args: argparse.Namespace, default_storage: str = "none") -> CacheConfig:
    """The ``cache`` section of --config, FLAME_CACHE_STORAGE, then the --cache-endpoint/--storage flags."""
    config = load_cache_config(args.config, dict(os.environ), default_storage=default_storage)
    endpoint = getattr(args, "cache_endpoint", None)
    if endpoint is not None:
        config = dataclasses.replace(config, endpoint=parse_cache_endpoint(endpoint, "--cache-endpoint", "flag"))
    storage = getattr(args, "cache_storage", None)
    if storage is not None:
        config = dataclasses.replace(config, storage=parse_cache_storage(storage, None, "flag", "--cache-storage"))
    if config.endpoint.tls and config.cert_file is None:
        raise InvalidArgument(f"cache endpoint {config.endpoint} serves TLS: set cache.tls in the config file")
    return config


def _up_cache_storage(config: ClusterConfig) -> str:
    """Where `flame up` keeps objects by default: beside its database, or nowhere if that is in memory."""
    return "none" if config.storage in ("memory", "none") else f"fs://{Path(config.data_dir) / 'cache'}"


def run_up(args: argparse.Namespace) -> None:
    without_numpy()
    config = _dashboard_on_by_default(load_cluster_config(args.config, _env(args, _CLUSTER_FLAGS)))
    cache = _cache_config(args, _up_cache_storage(config))

    async def serve() -> None:
        # The local node's warm interpreters start first: each takes ~0.2 s to import grpc, in its
        # own process, while this one imports the servers; the first session then binds at once.
        warm = await _start_warm_pool(config, args.executors) if args.warm_services else None
        try:
            from flame.allinone import AllInOne

            cluster = AllInOne(
                config, executors=args.executors, cache=cache, warm=warm, warm_services=args.warm_services
            )
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await cluster.start()
            settle_gc()
            try:
                lines = [
                    f"Flame is up: endpoint {cluster.endpoint}, storage {cluster.session_manager.storage.url}",
                    f"  export FLAME_ENDPOINT={cluster.endpoint}",
                    f"  export FLAME_CACHE_ENDPOINT={cluster.cache_endpoint}",
                    f"  object cache storage: {cache.storage}",
                ]
                if cluster.object_cache is not None and cluster.object_cache.flamepy_endpoint:
                    lines.append(
                        f"  object cache for flamepy (no credentials): {cluster.object_cache.flamepy_endpoint}"
                    )
                lines += [
                    f"  executor logs: {cluster.work_dir / 'logs'}",
                    f"  dashboard: {cluster.session_manager.dashboard_url or 'off'}",
                    "Press Ctrl-C to stop.",
                ]
                print("\n".join(lines), flush=True)
                serving = asyncio.ensure_future(cluster.serve())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for fut in (serving, stopping):
                    fut.cancel()
            finally:
                print("Stopping Flame ...", file=sys.stderr, flush=True)
                await cluster.shutdown()
        finally:
            if warm is not None:
                await warm.close()  # the node closes it once it runs; not if the start failed first

    asyncio.run(serve())


async def _start_warm_pool(config: ClusterConfig, executors: int | None) -> WarmPool:
    from flame.config._agent import local_node_slots, local_node_work_dir
    from flame.executor_manager.shims import WarmPool

    warm = WarmPool.for_node(local_node_slots(executors), local_node_work_dir(config.data_dir))
    warm.fill()
    await warm.first_started()
    return warm


def run_object_cache(args: argparse.Namespace) -> None:
    """`flame object-cache`: serve until SIGINT or SIGTERM."""
    without_numpy()
    from flame.object_cache import ObjectCache

    cache = ObjectCache(_cache_config(args))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: cache.reload())  # re-read cluster.auth.tokens_file
    cache.start()
    try:
        print(f"Flame object cache is up: {cache.endpoint}, storage {cache.storage.url}", flush=True)
        print(f"  export FLAME_CACHE_ENDPOINT={cache.endpoint}", flush=True)
        if cache.flamepy_endpoint:
            print(f"  flamepy clients (no credentials): {cache.flamepy_endpoint}", flush=True)
        if args.ready_file:
            tmp = Path(f"{args.ready_file}.tmp")
            tmp.write_text(cache.endpoint + "\n")
            tmp.replace(args.ready_file)
        while not stop.wait(0.5):
            pass
    finally:
        cache.shutdown()


def run_sm(args: argparse.Namespace) -> None:
    from flame.session_manager.server import SessionManager, serve_until_signalled

    config = _dashboard_on_by_default(load_cluster_config(args.config, _env(args, _CLUSTER_FLAGS)))
    manager = SessionManager(config)

    async def settled() -> None:  # after recovery, before the ports listen
        settle_gc()

    manager.before_serving.append(settled)
    asyncio.run(serve_until_signalled(manager))


def agent_settings(
    config: ExecutorManagerConfig,
    node_name: str | None,
    max_executors: int | None,
    capacity: ResourceRequirement | None = None,
    allowed_commands: tuple[str, ...] = (),
) -> AgentSettings:
    from flame.executor_manager import AgentSettings

    return AgentSettings(
        session_manager=config.session_manager.address,
        node_name=node_name or config.node_name,
        capacity=capacity or config.capacity,
        work_dir=config.work_dir,
        socket_dir=config.socket_dir,
        max_executors=max_executors or config.max_executors,
        warm_services=config.warm_services,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        service_start_timeout=config.service_start_timeout,
        stop_grace=config.stop_grace,
        tls=config.session_manager.tls,
        tls_ca=config.ca_file,
        tls_cert=config.cert_file,
        tls_key=config.key_file,
        metrics_port=config.metrics_port,
        allowed_commands=allowed_commands or config.allowed_commands.patterns,
        token=config.token,
        token_file=config.token_file,
    )


def run_em(args: argparse.Namespace) -> None:
    from flame.executor_manager import run_executor_manager

    env = _env(args, _AGENT_FLAGS)
    if args.token_file:  # the flag wins over a token in the environment
        env.pop("FLAME_TOKEN", None)
    config = load_executor_manager_config(args.config, env)
    if args.warm_services is not None:
        config = dataclasses.replace(config, warm_services=args.warm_services)
    settings = agent_settings(
        config, args.node_name, args.max_executors, args.capacity, tuple(args.allow_command or ())
    )
    settle_gc()  # its state is small: what start-up imported is what the collector would re-walk
    run_executor_manager(settings)
