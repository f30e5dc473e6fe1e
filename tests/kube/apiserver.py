"""A Kubernetes API server stand-in: the paths kr8s calls for pods, events, configmaps and PodGroups.

Objects live in memory with one resourceVersion counter; every change is kept in a bounded
history so watches resume from a resourceVersion, and one older than the history gets 410 Gone,
as from etcd after compaction. Pods are validated with kubernetes-validate (the official schema)
before they are stored. Watches send BOOKMARK events while idle and end after timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import kubernetes_validate

from tests.kube.http import Request, Response

Obj = dict[str, Any]
K8S_VERSION = "1.33"
VOLCANO = "scheduling.volcano.sh/v1beta1"
HISTORY = 2_000
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+/[^/]+))/namespaces/(?P<ns>[^/]+)/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?$"
)
_KINDS = {
    "pods": ("v1", "Pod"),
    "events": ("v1", "Event"),
    "configmaps": ("v1", "ConfigMap"),
    "podgroups": (VOLCANO, "PodGroup"),
}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def matches(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def field_matches(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        path, _, value = term.partition("=")
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if str(current) != value:
            return False
    return True


class ApiServer:
    def __init__(self, bookmark_seconds: float = 1.0) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (resource, namespace, name)
        self.version = 0
        self.history: list[tuple[int, str, str, Obj]] = []  # (rv, type, resource, object)
        self.changed = asyncio.Condition()
        self.bookmark_seconds = bookmark_seconds
        self.watch_epoch = 0  # bumped to end every open watch (as an API server restart does)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call
        self.on_create: list[Callable[[Obj], None]] = []  # the kubelet's hooks
        self.on_delete: list[Callable[[Obj, int], bool]] = []  # True: the hook finishes the deletion

    # ---- store ------------------------------------------------------------------------------

    async def put(self, resource: str, obj: Obj, kind: str) -> Obj:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        key = (resource, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.history.append((self.version, kind, resource, copy.deepcopy(obj)))
        del self.history[:-HISTORY]
        async with self.changed:
            self.changed.notify_all()
        return obj

    def compact(self) -> None:
        """Forget the history (watches from an older resourceVersion get 410 Gone)."""
        self.history.clear()

    async def end_watches(self) -> None:
        """End every open watch cleanly; clients resume from the last resourceVersion they saw."""
        self.watch_epoch += 1
        async with self.changed:
            self.changed.notify_all()

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((resource, namespace, name))

    def items(self, resource: str, namespace: str | None = None) -> list[Obj]:
        return [o for (r, ns, _), o in self.objects.items() if r == resource and namespace in (None, ns)]

    async def record_event(self, pod: Obj, kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``pod`` (Normal or Warning), as the scheduler and kubelet post them."""
        meta = pod["metadata"]
        name = f"{meta['name']}.{uuid.uuid4().hex[:12]}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"], "uid": str(uuid.uuid4())},
            "involvedObject": {
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "apiVersion": "v1",
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "source": {"component": "emulated-kubelet"},
        }
        _check(event)
        await self.put("events", event, "ADDED")

    # ---- HTTP -------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.path))
        if request.path == "/version":
            return Response(
                body={"major": "1", "minor": "33", "gitVersion": "v1.33.0-flame-emulation", "platform": "linux/amd64"}
            )
        route = _PATH.match(request.path)
        if route is None or route["resource"] not in _KINDS:
            return Response(404, status(404, "NotFound", f"the server could not find {request.path}"))
        resource, ns, name = route["resource"], route["ns"], route["name"]
        api_version = _KINDS[resource][0]
        if (route["group"] or "v1") != api_version:
            return Response(404, status(404, "NotFound", f"no {resource} in {route['group'] or 'v1'}"))
        if request.method == "GET" and name is None:
            if request.query.get("watch") in ("true", "1"):
                return self._watch(resource, ns, request.query)
            return self._list(resource, ns, request.query)
        if request.method == "GET":
            obj = self.get(resource, ns, name)
            return (
                Response(body=obj) if obj else Response(404, status(404, "NotFound", f'{resource} "{name}" not found'))
            )
        if request.method == "POST" and name is None:
            return await self._create(resource, ns, request.body)
        if request.method == "DELETE" and name is not None:
            return await self._delete(resource, ns, name, request.body or {})
        return Response(405, status(405, "MethodNotAllowed", f"{request.method} {request.path}"))

    def _list(self, resource: str, ns: str, query: dict[str, str]) -> Response:
        items = [
            copy.deepcopy(o)
            for o in self.items(resource, ns)
            if matches(o, query.get("labelSelector")) and field_matches(o, query.get("fieldSelector"))
        ]
        api_version, kind = _KINDS[resource]
        return Response(
            body={
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "items": items,
                "metadata": {"resourceVersion": str(self.version)},
            }
        )

    async def _create(self, resource: str, ns: str, body: Obj | None) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return Response(400, status(400, "BadRequest", "the body must be an object with metadata"))
        meta = body["metadata"]
        name = meta.get("name")
        if meta.get("namespace", ns) != ns or not name:
            return Response(400, status(400, "BadRequest", "metadata.name and the path's namespace are required"))
        try:
            _check(body)
        except ValueError as exc:
            return Response(422, status(422, "Invalid", f"{_KINDS[resource][1]} {name!r} is invalid: {exc}"))
        if self.get(resource, ns, name) is not None:
            return Response(409, status(409, "AlreadyExists", f'{resource} "{name}" already exists'))
        obj = copy.deepcopy(body)
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
        if resource == "pods":
            obj["status"] = {"phase": "Pending"}
        await self.put(resource, obj, "ADDED")
        for hook in self.on_create:
            hook(obj)
        return Response(201, copy.deepcopy(obj))

    async def _delete(self, resource: str, ns: str, name: str, options: Obj) -> Response:
        obj = self.get(resource, ns, name)
        if obj is None:
            return Response(404, status(404, "NotFound", f'{resource} "{name}" not found'))
        if resource == "pods":
            if "deletionTimestamp" not in obj["metadata"]:
                grace = options.get("gracePeriodSeconds", obj["spec"].get("terminationGracePeriodSeconds", 30))
                obj["metadata"]["deletionTimestamp"] = now()
                obj["metadata"]["deletionGracePeriodSeconds"] = grace
                await self.put(resource, obj, "MODIFIED")
                if any(hook(obj, int(grace)) for hook in self.on_delete):
                    return Response(200, copy.deepcopy(obj))
            else:
                return Response(200, copy.deepcopy(obj))
        await self.put(resource, obj, "DELETED")
        return Response(200, copy.deepcopy(obj))

    def _watch(self, resource: str, ns: str, query: dict[str, str]) -> Response:
        since = int(query.get("resourceVersion") or self.version)
        selector = query.get("labelSelector")
        bookmarks = query.get("allowWatchBookmarks") == "true"
        timeout = float(query.get("timeoutSeconds", 1800))
        api_version, kind = _KINDS[resource]

        async def events() -> AsyncIterator[Obj]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            if since < self.version and (not self.history or self.history[0][0] > since + 1):
                yield {"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since}")}
                return
            seen = since
            epoch = self.watch_epoch
            while loop.time() < deadline and epoch == self.watch_epoch:
                for rv, change, res, obj in list(self.history):
                    if rv <= seen:
                        continue
                    seen = rv
                    if res == resource and obj["metadata"]["namespace"] == ns and matches(obj, selector):
                        yield {"type": change, "object": obj}
                if not self.history:  # compacted under an open watch: it goes on from now
                    seen = self.version
                async with self.changed:
                    if self.version > seen:
                        continue
                    try:
                        await asyncio.wait_for(
                            self.changed.wait(), max(0.0, min(self.bookmark_seconds, deadline - loop.time()))
                        )
                        continue
                    except asyncio.TimeoutError:
                        pass
                if bookmarks:
                    yield {
                        "type": "BOOKMARK",
                        "object": {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": str(seen)}},
                    }

        return Response(200, stream=events())


def _check(obj: Obj) -> None:
    """Validate against the official schema (PodGroup, a CRD the package has no schema for, by hand)."""
    if obj.get("kind") == "PodGroup":
        spec = obj.get("spec")
        if obj.get("apiVersion") != VOLCANO or not isinstance(spec, dict):
            raise ValueError(f"a PodGroup needs apiVersion {VOLCANO} and a spec")
        if not isinstance(spec.get("minMember"), int) or spec["minMember"] < 0:
            raise ValueError("spec.minMember must be a whole number >= 0")
        if not isinstance(spec.get("queue", ""), str):
            raise ValueError("spec.queue must be a string")
        return
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise ValueError(f"{path}: {exc.message}") from exc
