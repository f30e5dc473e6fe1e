from __future__ import annotations

import asyncio
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from flame.allinone import AllInOne
from flame.config import cache_config_from_dict, cluster_config_from_dict


class LocalCluster:
    """Start with ``start()`` or ``with``; ``endpoint`` is where clients connect."""

    def __init__(
        self,
        *,
        executors: int = 2,
        data_dir: str | Path | None = None,
        storage: str = "memory",
        cluster: dict[str, Any] | None = None,
        cache: dict[str, Any] | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="flame-")
            data_dir = self._tmp.name
        section = {"endpoint": "http://127.0.0.1:0", "storage": storage, "data_dir": str(data_dir)}
        section.update(cluster or {})
        self.config = cluster_config_from_dict({"cluster": section}, source="LocalCluster")
        # An object cache on a free port, memory only unless ``cache`` says otherwise.
        cache_section = {"endpoint": "grpc://127.0.0.1:0", "storage": "none", **(cache or {})}
        self.cache_config = cache_config_from_dict({"cluster": section, "cache": cache_section}, source="LocalCluster")
        self._executors = executors
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flame-local-cluster", daemon=True)
        self.cluster: AllInOne | None = None

    def _call(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @property
    def endpoint(self) -> str:
        assert self.cluster is not None, "the cluster is not started"
        return self.cluster.endpoint

    @property
    def cache_endpoint(self) -> str:
        """Where the cluster's object cache listens (``grpc://127.0.0.1:<port>``)."""
        assert self.cluster is not None and self.cluster.cache_endpoint is not None, "the cluster is not started"
        return self.cluster.cache_endpoint

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def start(self) -> LocalCluster:
        self._thread.start()

        async def start() -> AllInOne:
            cluster = AllInOne(self.config, executors=self._executors, cache=self.cache_config)
            await cluster.start()
            return cluster

        self.cluster = self._call(start())
        return self

    def run(self, fn: Any) -> Any:
        """Run ``fn(session_manager)`` on the cluster's event loop (for inspecting state in tests)."""
        assert self.cluster is not None

        async def call() -> Any:
            assert self.cluster is not None
            return fn(self.cluster.session_manager)

        return self._call(call())

    def stop(self) -> None:
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            self._call(cluster.shutdown())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
