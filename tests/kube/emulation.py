"""The Kubernetes emulation the provider's tests run against: API server + kubelet in a thread.

Real HTTP on 127.0.0.1 (port 0) with a kubeconfig file pointing at it, so the provider under
test is the real code with the real client library (kr8s), configured as a user would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.kube import http
from tests.kube.apiserver import ApiServer, Obj
from tests.kube.kubelet import Kubelet

T = TypeVar("T")
NAMESPACE = "flame"


class Emulation:
    def __init__(self, directory: Path, cpu: int = 64, memory: int = 256 * 2**30) -> None:
        self.directory = directory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-emulation", daemon=True)
        self._cpu, self._memory = cpu, memory
        self.api: ApiServer
        self.kubelet: Kubelet
        self._server: http.Server | None = None
        self.url = ""
        self.kubeconfig = directory / "kubeconfig"

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the emulation's loop (its state is only touched there)."""

        async def run() -> T:
            return fn()

        result: T = self.run(run())
        return result

    def run(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> Emulation:
        self._thread.start()

        async def start() -> None:
            self.api = ApiServer(bookmark_seconds=0.5)
            self.kubelet = Kubelet(self.api, cpu=self._cpu, memory=self._memory)
            self._server = http.Server(self.api.handle)
            await self._server.start()
            self.url = f"http://127.0.0.1:{self._server.port}"
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "flame-cluster", "namespace": NAMESPACE, "uid": "cm-uid-1"},
                "data": {"flame-cluster.yaml": "cluster: {}\n"},
            }
            await self.api.put("configmaps", configmap, "ADDED")

        self.run(start())
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulation",
                    "clusters": [{"name": "emulation", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "emulated"}}],
                    "contexts": [
                        {
                            "name": "emulation",
                            "context": {"cluster": "emulation", "user": "tester", "namespace": NAMESPACE},
                        }
                    ],
                }
            )
        )
        return self

    def stop(self) -> None:
        async def stop() -> None:
            await self.kubelet.stop()
            if self._server is not None:
                await self._server.close()

        self.run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ---- what tests look at and do --------------------------------------------------------------

    def pods(self, phase: str | None = None) -> list[Obj]:
        pods = self.call(lambda: [p for p in self.api.items("pods")])
        return [p for p in pods if phase is None or p.get("status", {}).get("phase") == phase]

    def live_pods(self) -> list[Obj]:
        """Pods not being deleted."""
        return [p for p in self.pods() if "deletionTimestamp" not in p["metadata"]]

    def podgroups(self) -> list[Obj]:
        return self.call(lambda: list(self.api.items("podgroups")))

    def delete_pod(self, name: str) -> None:
        """As ``kubectl delete pod``: through the API, grace period and all."""
        self.run(self.api.handle(http.Request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}", {}, None)))

    def expire_watches(self) -> None:
        """Compact the history and cut open watches: clients resume, get 410 Gone and list again."""

        async def expire() -> None:
            configmap = self.api.get("configmaps", NAMESPACE, "flame-cluster")
            assert configmap is not None and self._server is not None
            await self.api.put("configmaps", configmap, "MODIFIED")  # a change no pod watcher saw
            self.api.compact()
            await self.api.end_watches()

        self.run(expire())

    def pod_creates(self) -> int:
        return self.call(lambda: sum(1 for m, p in self.api.requests if m == "POST" and p.endswith("/pods")))
