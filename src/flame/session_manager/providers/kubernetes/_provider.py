"""The Kubernetes provider: executor-manager pods for the executors no registered node can give.

Two tasks it owns: one applies the latest plan (creates and deletes pods, and PodGroups under
Volcano), one lists the cluster's pods and then watches them (never polls) and turns what it
sees into state: a pod's executor manager registering as a node, a pod that cannot be
scheduled or will not start (a session event with the reason), a pod that stopped or was
deleted under us (its node is forgotten at once, so its running tasks are retried elsewhere).
At start it adopts the pods a previous session manager made (by label), and deletes those of
sessions that no longer exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flame.config import KubernetesConfig
from flame.session_manager.effects import GiveUp, LoseNode
from flame.session_manager.providers.kubernetes._api import Expired, KubeApi, Obj
from flame.session_manager.providers.kubernetes._pods import (
    ANNOTATION_SESSION,
    LABEL_APPLICATION,
    LABEL_CLUSTER,
    PodRequest,
    label_value,
    pod_manifest,
    pod_name,
    pod_status,
    podgroup_manifest,
    podgroup_name,
)
from flame.session_manager.providers.kubernetes._reconcile import Backoff, PodInfo, plan_pods
from flame.session_manager.scheduler import Snapshot
from flame.types import EVENT_SESSION_BIND_FAILED, EVENT_SESSION_BIND_GIVEN_UP

if TYPE_CHECKING:
    from flame.session_manager.controller import Controller

logger = logging.getLogger(__name__)

_PARALLEL_CALLS = 16
_RETRY_SECONDS = 1.0


class KubernetesProvider:
    def __init__(self, config: KubernetesConfig, cluster: str, controller: Controller) -> None:
        self.config = config
        self.cluster = cluster
        self.controller = controller
        self.pods: dict[str, PodInfo] = {}
        self.backoff: dict[str, Backoff] = {}
        self.podgroups: set[str] = set()
        self.created = 0  # pods created since start (for metrics and benchmarks)
        self.selector = f"{LABEL_CLUSTER}={label_value(cluster)}"
        self._api: KubeApi | None = None
        self._owner: Obj | None = None
        self._latest: tuple[Mapping[str, int], Snapshot] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._doomed: dict[str, tuple[str, str]] = {}  # pods seen failing: name -> (session id, reason)
        self._calls = asyncio.Semaphore(_PARALLEL_CALLS)
        # Sessions told their pods cannot be scheduled: told once, until one of their pods starts.
        self._unschedulable: set[str] = set()

    @property
    def api(self) -> KubeApi:
        assert self._api is not None, "the provider is not started"
        return self._api

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._api = await KubeApi.connect(self.config)
        if self.config.owner_configmap:
            uid = await self.api.configmap_uid(self.config.owner_configmap)
            self._owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": self.config.owner_configmap, "uid": uid}
        pods, since = await self.api.list_pods(self.selector)
        for obj in pods:
            self._observe("ADDED", obj)
        orphans = [p for p in self.pods.values() if p.session_id not in self.controller.sessions]
        for pod in orphans:
            await self._delete(pod.name, "its session no longer exists")
        logger.info(
            "kubernetes provider: namespace %s, %d pods adopted, %d of gone sessions deleted",
            self.api.namespace,
            len(pods) - len(orphans),
            len(orphans),
        )
        self._tasks = [
            asyncio.create_task(self._watch(since), name="kubernetes-watch"),
            asyncio.create_task(self._work(), name="kubernetes-provider"),
        ]

    async def shutdown(self) -> None:
        """Stop watching; pods stay (a restarted session manager adopts them)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._api is not None:
            await self._api.close()

    def reconcile(self, unmet: Mapping[str, int], snapshot: Snapshot) -> None:
        """Called after each scheduling cycle with the executors no registered node could give."""
        self._latest = (unmet, snapshot)
        self._wake.set()

    # ---- applying plans -----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._latest is None:
                continue  # no plan yet
            unmet, snapshot = self._latest
            try:
                await self._apply(unmet, snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("kubernetes provider: applying the plan failed; retrying at the next cycle")

    async def _apply(self, unmet: Mapping[str, int], snapshot: Snapshot) -> None:
        now = time.monotonic()
        per_pod = self.config.executors_per_pod
        doomed, self._doomed = self._doomed, {}
        if doomed:
            details = await asyncio.gather(*(self._last_warning(name) for name in doomed))
            for (name, (sid, reason)), detail in zip(doomed.items(), details, strict=True):
                self._failed(sid, f"pod {name} failed: {reason}{detail}")
        calls = [self._delete(name, "it failed") for name in doomed]
        plan = plan_pods(self.pods, unmet, snapshot, self.backoff, per_pod, self.config.max_pods, now)
        calls += [self._delete(name, reason) for name, reason in plan.delete]
        sessions = {s.id: s for s in snapshot.sessions}
        for sid, count in plan.create.items():
            session = sessions[sid]
            app = self.controller.applications.get(session.application)
            group = None
            if self.config.scheduler == "volcano":
                group = podgroup_name(self.cluster, sid)
                if group not in self.podgroups:
                    body = podgroup_manifest(
                        self.config,
                        self.cluster,
                        self.api.namespace,
                        group,
                        sid,
                        session.application,
                        session.resreq,
                        session.min_instances,
                        self._owner,
                    )
                    await self.api.create_podgroup(body)
                    self.podgroups.add(group)
            for _ in range(count):
                request = PodRequest(
                    name=pod_name(self.cluster, sid),
                    session_id=sid,
                    application=session.application,
                    resreq=session.resreq,
                    image=app.spec.image if app is not None else None,
                    podgroup=group,
                )
                self.pods[request.name] = PodInfo(request.name, sid, session.application, now)
                calls.append(self._create(request))
        if calls:
            await asyncio.gather(*calls)
        await self._drop_podgroups(sessions)

    async def _create(self, request: PodRequest) -> None:
        body = pod_manifest(self.config, self.cluster, self.api.namespace, request, self._owner)
        try:
            async with self._calls:
                await self.api.create_pod(body)
            self.created += 1
            logger.info("pod %s created for session %s", request.name, request.session_id)
        except Exception as exc:  # refused (quota, admission, RBAC) or unreachable: tell the session
            self.pods.pop(request.name, None)
            self._failed(request.session_id, f"cannot create pod {request.name}: {exc}")

    async def _delete(self, name: str, reason: str) -> None:
        pod = self.pods.get(name)
        if pod is not None:
            pod.deleting = True
        self.controller.handle(LoseNode(name, f"its pod is being deleted ({reason})"))
        logger.info("deleting pod %s: %s", name, reason)
        try:
            async with self._calls:
                await self.api.delete_pod(name)
        except Exception:
            logger.exception("cannot delete pod %s; trying again at the next cycle", name)
            if pod is not None:
                pod.deleting = False

    async def _drop_podgroups(self, sessions: Mapping[str, object]) -> None:
        """PodGroups of sessions that are gone and have no pods left."""
        left = {podgroup_name(self.cluster, p.session_id) for p in self.pods.values()}
        live = {podgroup_name(self.cluster, sid) for sid in sessions}
        for group in sorted(self.podgroups - left - live):
            try:
                await self.api.delete_podgroup(group)
                self.podgroups.discard(group)
            except Exception:
                logger.exception("cannot delete podgroup %s", group)

    # ---- watching -----------------------------------------------------------------------------

    async def _watch(self, since: str) -> None:
        while True:
            try:
                async for kind, obj in self.api.watch_pods(self.selector, since):
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if version:
                        since = str(version)
                    if kind != "BOOKMARK":
                        self._observe(kind, obj)
                continue  # the server ended the watch: resume from the last version seen
            except asyncio.CancelledError:
                raise
            except Expired:
                logger.info("pod watch expired; listing pods again")
            except Exception as exc:
                logger.warning("pod watch failed (%s); listing again in %.0f s", exc, _RETRY_SECONDS)
                await asyncio.sleep(_RETRY_SECONDS)
            since = await self._relist()

    async def _relist(self) -> str:
        while True:
            try:
                pods, since = await self.api.list_pods(self.selector)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot list pods (%s); trying again in %.0f s", exc, _RETRY_SECONDS)
                await asyncio.sleep(_RETRY_SECONDS)
        seen = {(p.get("metadata") or {}).get("name") for p in pods}
        for name in [n for n in self.pods if n not in seen]:
            self._observe("DELETED", {"metadata": {"name": name}})
        for obj in pods:
            self._observe("MODIFIED", obj)
        return since

    def _observe(self, kind: str, obj: Obj) -> None:
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            return
        pod = self.pods.get(name)
        if kind == "DELETED":
            self.pods.pop(name, None)
            if pod is not None and not pod.deleting:
                self._session_event(pod.session_id, f"pod {name} was deleted; its tasks are retried elsewhere")
            self.controller.handle(LoseNode(name, "its pod was deleted"))
            self._wake.set()
            return
        if pod is None:
            sid = (metadata.get("annotations") or {}).get(ANNOTATION_SESSION)
            if sid is None:
                return  # not one of ours after all
            application = (metadata.get("labels") or {}).get(LABEL_APPLICATION, "")
            pod = self.pods[name] = PodInfo(name, sid, application, time.monotonic())
        pod.status = status = pod_status(obj)
        if status.unschedulable and pod.session_id not in self._unschedulable:
            self._unschedulable.add(pod.session_id)
            self._session_event(pod.session_id, f"pod {name} cannot be scheduled: {status.unschedulable}")
        elif status.started:
            self._unschedulable.discard(pod.session_id)
        if status.failed and "failed" not in pod.reported:
            pod.reported.add("failed")  # told, backed off and deleted by the next _apply
            self.controller.handle(LoseNode(name, f"its pod failed ({status.failed})"))
            pod.deleting = True
            self._doomed[name] = (pod.session_id, status.failed)
        state = self.backoff.get(pod.session_id)
        if pod.registered and state is not None and not state.gave_up:
            del self.backoff[pod.session_id]  # a pod of the session works: no more backoff
        self._wake.set()

    # ---- telling the session ------------------------------------------------------------------

    async def _last_warning(self, name: str) -> str:
        """The pod's latest Warning event, as ``; last event: <reason>: <message>`` (best effort)."""
        try:
            events = await self.api.pod_events(name)
        except Exception as exc:
            logger.debug("cannot read the events of pod %s: %s", name, exc)
            return ""
        warnings = [e for e in events if e.get("type") == "Warning"]
        if not warnings:
            return ""
        last = max(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return f"; last event: {last.get('reason', '')}: {last.get('message', '')}"

    def _session_event(self, session_id: str, message: str) -> None:
        rec = self.controller.sessions.get(session_id)
        logger.warning("session %s: %s", session_id, message)
        if rec is not None:
            self.controller.session_event(rec, EVENT_SESSION_BIND_FAILED, message)

    def _failed(self, session_id: str, message: str) -> None:
        """A pod of the session failed: back off, and give up after max_pod_failures in a row."""
        self._session_event(session_id, message)
        state = self.backoff.setdefault(session_id, Backoff())
        state.failures += 1
        state.retry_at = time.monotonic() + self.config.failure_backoff * 2 ** (state.failures - 1)
        if state.failures < self.config.max_pod_failures or state.gave_up:
            return
        state.gave_up = True
        reason = f"gave up after {state.failures} failed pods in a row; last: {message}"
        # Its pending tasks fail (stored, then announced) unless an executor still serves it.
        self.controller.handle(GiveUp(session_id, EVENT_SESSION_BIND_GIVEN_UP, reason))
