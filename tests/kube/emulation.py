"""The Kubernetes emulation the provider's tests run against: API server + kubelet in a thread.

Real HTTP on 127.0.0.1 (port 0) with a kubeconfig file pointing at it, so the provider under
test is the real code with the real client library (kr8s), configured as a user would.
"""

from __future__ import annotations

import asyncio
import ssl
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
        self.service_account = directory / "serviceaccount"
        self.token = "emulated-service-account-token"
        self.refused = 0  # requests without the service account's token (in_cluster)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the emulation's loop (its state is only touched there)."""

        async def run() -> T:
            return fn()

        result: T = self.run(run())
        return result

    def run(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self, *, in_cluster: bool = False) -> Emulation:
        """``in_cluster``: serve https and ask for the bearer token of a service account directory
        (``service_account``: token, ca.crt, namespace), as a pod's API server does."""
        self._thread.start()
        tls = self._service_account() if in_cluster else None

        async def start() -> None:
            self.api = ApiServer(bookmark_seconds=0.5)
            self.kubelet = Kubelet(self.api, cpu=self._cpu, memory=self._memory)
            self._server = http.Server(self._checked if in_cluster else self.api.handle)
            await self._server.start(tls=tls)
            self.url = f"{'https' if in_cluster else 'http'}://127.0.0.1:{self._server.port}"
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

    def _service_account(self) -> ssl.SSLContext:
        from tests.integration.auth_helpers import make_ca, make_certificate

        certs = self.directory / "api-certs"
        certs.mkdir()
        ca = make_ca(certs)
        cert, key = make_certificate(certs, "apiserver", "kubernetes", "IP:127.0.0.1")
        self.service_account.mkdir()
        (self.service_account / "token").write_text(self.token)
        (self.service_account / "ca.crt").write_bytes(ca.read_bytes())
        (self.service_account / "namespace").write_text(NAMESPACE)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    async def _checked(self, request: http.Request) -> http.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            self.refused += 1
            return http.Response(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401})
        return await self.api.handle(request)

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
