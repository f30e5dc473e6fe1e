"""The Kubernetes API calls the provider makes, through kr8s (its config, auth, TLS and HTTP session).

kr8s finds credentials the way kubectl does: a kubeconfig file ($KUBECONFIG or ~/.kube/config, or
the configured one) if there is one, else the pod's service account (in-cluster). Objects are
created and deleted with kr8s's object classes; pods are listed and then watched from the list's
resourceVersion with bookmarks, read line by line from kr8s's streaming call, so a watch that ends
resumes where it was and only an expired resourceVersion (410 Gone) costs a new list.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject, Pod, new_class

from flame.config import KubernetesConfig
from flame.errors import Unavailable

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
PODGROUP_VERSION = "scheduling.volcano.sh/v1beta1"
PodGroup: type[APIObject] = new_class(kind="PodGroup", version=PODGROUP_VERSION, namespaced=True, plural="podgroups")
# A watch is asked to end after this long (the server may end it sooner); it then resumes.
WATCH_SECONDS = 300


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class KubeApi:
    """One namespace of one API server."""

    def __init__(self, api: kr8s.asyncio.Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    @classmethod
    async def connect(cls, config: KubernetesConfig) -> KubeApi:
        try:
            api = await kr8s.asyncio.api(
                kubeconfig=config.kubeconfig, context=config.context, serviceaccount=config.service_account_dir
            )
        except Exception as exc:  # kr8s raises ValueError, httpx and OS errors alike
            raise Unavailable(f"cannot reach the Kubernetes API: {exc}") from exc
        return cls(api, config.namespace or api.namespace)

    async def create_pod(self, body: Obj) -> None:
        await Pod(body, api=self.api).create()

    async def delete_pod(self, name: str) -> None:
        await _delete(Pod({"metadata": {"name": name, "namespace": self.namespace}}, api=self.api))

    async def create_podgroup(self, body: Obj) -> None:
        try:
            await PodGroup(body, api=self.api).create()
        except kr8s.ServerError as exc:
            if _code(exc) != 409:  # already there (made before a restart): keep it
                raise

    async def delete_podgroup(self, name: str) -> None:
        await _delete(PodGroup({"metadata": {"name": name, "namespace": self.namespace}}, api=self.api))

    async def configmap_uid(self, name: str) -> str:
        async with self.api.call_api("GET", version="v1", url=f"configmaps/{name}", namespace=self.namespace) as r:
            return str(r.json()["metadata"]["uid"])

    async def pod_events(self, name: str) -> list[Obj]:
        """Events about pod ``name``, oldest first."""
        params = {"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={name}"}
        async with self.api.call_api("GET", version="v1", url="events", namespace=self.namespace, params=params) as r:
            items: list[Obj] = r.json().get("items", [])
        return items

    async def list_pods(self, selector: str) -> tuple[list[Obj], str]:
        """Every pod matching ``selector`` and the list's resourceVersion (to watch from)."""
        pods: list[Obj] = []
        params: dict[str, Any] = {"labelSelector": selector, "limit": 500}
        while True:
            async with self.api.call_api("GET", version="v1", url="pods", namespace=self.namespace, params=params) as r:
                page = r.json()
            pods.extend(page.get("items", []))
            metadata = page.get("metadata", {})
            if not metadata.get("continue"):
                return pods, str(metadata.get("resourceVersion", ""))
            params["continue"] = metadata["continue"]

    async def watch_pods(self, selector: str, since: str) -> AsyncIterator[tuple[str, Obj]]:
        """Changes after resourceVersion ``since``: (ADDED | MODIFIED | DELETED | BOOKMARK, object).

        Ends when the server ends the watch; raises :class:`Expired` on 410 Gone.
        """
        params = {
            "watch": "true",
            "labelSelector": selector,
            "resourceVersion": since,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        try:
            async with self.api.call_api(
                "GET", version="v1", url="pods", namespace=self.namespace, params=params, stream=True, timeout=None
            ) as response:
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type", ""), event.get("object", {})
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Expired(obj.get("message", "resourceVersion too old"))
                        raise Unavailable(f"pod watch failed: {obj.get('message', obj)}")
                    yield kind, obj
        except kr8s.ServerError as exc:
            if _code(exc) == 410:
                raise Expired(str(exc)) from exc
            raise

    async def close(self) -> None:
        session = self.api._session  # kr8s keeps one httpx client per Api and has no close of its own
        if session is not None:
            await session.aclose()


async def _delete(obj: APIObject) -> None:
    with contextlib.suppress(kr8s.NotFoundError):  # gone already: what we wanted
        await obj.delete()


def _code(exc: kr8s.ServerError) -> int | None:
    response = exc.response
    return response.status_code if response is not None else None
