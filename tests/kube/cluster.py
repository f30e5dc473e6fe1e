"""A session manager with the Kubernetes provider pointed at the emulation, on its own loop and thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from flame.config import cluster_config_from_dict
from flame.session_manager.providers.kubernetes import KubernetesProvider
from flame.session_manager.server import SessionManager
from tests.integration.conftest import free_port
from tests.kube.emulation import NAMESPACE, Emulation


class KubeCluster:
    def __init__(self, emulation: Emulation, data_dir: Path, storage: str = "memory", **provider: Any) -> None:
        port = free_port()  # the pods need the address before the server is up
        settings = {
            "namespace": NAMESPACE,
            "kubeconfig": str(emulation.kubeconfig),
            "session_manager": f"http://127.0.0.1:{port}",
            "owner_configmap": "flame-cluster",
            "failure_backoff": 0.2,
        }
        settings.update(provider)
        section = {
            "endpoint": f"http://127.0.0.1:{port}",
            "storage": storage,
            "data_dir": str(data_dir),
            "schedule_interval": 100,
            "slot": "cpu=1,mem=256m",
            "provider": {"kubernetes": settings},
        }
        self.config = cluster_config_from_dict({"cluster": section}, source="KubeCluster")
        self.endpoint = f"http://127.0.0.1:{port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-cluster", daemon=True)
        self.manager: SessionManager | None = None

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def call(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn(self.manager)

        return self.run(run())

    @property
    def provider(self) -> KubernetesProvider:
        assert self.manager is not None
        provider = self.manager.provider
        assert isinstance(provider, KubernetesProvider)
        return provider

    def start(self) -> KubeCluster:
        if not self._thread.is_alive():
            self._thread.start()

        async def start() -> SessionManager:
            manager = SessionManager(self.config)
            await manager.start()
            return manager

        self.manager = self.run(start())
        return self

    def stop(self) -> None:
        """Stop the session manager; the pods stay, as when its own pod is replaced."""
        if self.manager is not None:
            manager, self.manager = self.manager, None
            self.run(manager.shutdown())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
