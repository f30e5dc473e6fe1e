"""Executor-manager pods and Volcano PodGroups as Kubernetes objects, and what a pod's status means.

Pure functions over plain dicts: what the provider sends and how it reads what it gets back.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from flame.config import KubernetesConfig
from flame.session_manager.providers.kubernetes._api import PODGROUP_VERSION
from flame.types import ResourceRequirement

Obj = dict[str, Any]

LABEL_CLUSTER = "flame.dev/cluster"
LABEL_SESSION = "flame.dev/session"
LABEL_APPLICATION = "flame.dev/application"
ANNOTATION_SESSION = "flame.dev/session-id"  # labels are cut to 63 characters; the exact id is here
VOLCANO_GROUP = "scheduling.k8s.io/group-name"
GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER = "executor-manager"

# Container waiting reasons that mean the pod will not start as it is.
_STUCK = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff")


def label_value(text: str) -> str:
    """``text`` as a label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends).

    A value that had to change keeps a short hash of the original, so two ids do not collide.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-_.")
    if clean == text and len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[:54].rstrip('-_.')}-{digest}".lstrip("-")


def _dns_part(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"


def pod_name(cluster: str, session_id: str) -> str:
    """A fresh pod name: also the executor manager's node name, so it stays a 63-character DNS label."""
    return f"flame-{_dns_part(cluster, 12)}-{_dns_part(session_id, 30)}-{secrets.token_hex(3)}"


def podgroup_name(cluster: str, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:8]
    return f"flame-{_dns_part(cluster, 12)}-{_dns_part(session_id, 30)}-{digest}"


def quantities(r: ResourceRequirement) -> dict[str, str]:
    out: dict[str, str] = {}
    if r.cpu:
        out["cpu"] = str(r.cpu)
    if r.memory:
        out["memory"] = str(r.memory)
    if r.gpu:
        out[GPU_RESOURCE] = str(r.gpu)
    return out


@dataclass(frozen=True)
class PodRequest:
    """One pod to make for a session."""

    name: str
    session_id: str
    application: str
    resreq: ResourceRequirement  # of one executor
    image: str | None = None  # the application's image, if it has one
    podgroup: str | None = None


def labels(cluster: str, session_id: str, application: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "flame-executor-manager",
        "app.kubernetes.io/managed-by": "flame-session-manager",
        LABEL_CLUSTER: label_value(cluster),
        LABEL_SESSION: label_value(session_id),
        LABEL_APPLICATION: label_value(application),
    }


def pod_manifest(config: KubernetesConfig, cluster: str, namespace: str, request: PodRequest, owner: Obj | None) -> Obj:
    """The pod: an executor manager that registers as node ``request.name`` with what the pod requests."""
    per_pod = config.executors_per_pod
    capacity = ResourceRequirement(
        cpu=request.resreq.cpu * per_pod, memory=request.resreq.memory * per_pod, gpu=request.resreq.gpu * per_pod
    )
    resources = quantities(capacity)
    metadata: Obj = {
        "name": request.name,
        "namespace": namespace,
        "labels": labels(cluster, request.session_id, request.application),
        "annotations": {ANNOTATION_SESSION: request.session_id},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    args = [
        "executor-manager",
        "--session-manager",
        "$(FLAME_SESSION_MANAGER)",
        "--node-name",
        "$(FLAME_NODE_NAME)",
        "--capacity",
        str(capacity) if capacity.cpu else f"cpu={per_pod},mem={capacity.memory or 1}",
        "--max-executors",
        str(per_pod),
    ]
    spec: Obj = {
        "restartPolicy": "Never",  # a pod that stops is replaced by the provider, not restarted in place
        "terminationGracePeriodSeconds": 30,
        "containers": [
            {
                "name": CONTAINER,
                "image": request.image or config.image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["flame"],
                "args": args,
                "env": [
                    {"name": "FLAME_SESSION_MANAGER", "value": str(config.session_manager)},
                    {"name": "FLAME_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "resources": {"requests": resources, "limits": dict(resources)} if resources else {},
            }
        ],
    }
    env = spec["containers"][0]["env"]
    if config.cache_endpoint is not None:  # the executor manager's services inherit it
        env.append({"name": "FLAME_CACHE_ENDPOINT", "value": config.cache_endpoint})
    if config.token_secret is not None:
        env.append(
            {"name": "FLAME_TOKEN", "valueFrom": {"secretKeyRef": {"name": config.token_secret, "key": "token"}}}
        )
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        spec["tolerations"] = [dict(t) for t in config.tolerations]
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in config.image_pull_secrets]
    if request.podgroup is not None:
        spec["schedulerName"] = "volcano"
        metadata["annotations"][VOLCANO_GROUP] = request.podgroup
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def podgroup_manifest(
    config: KubernetesConfig,
    cluster: str,
    namespace: str,
    name: str,
    session_id: str,
    application: str,
    resreq: ResourceRequirement,
    min_instances: int,
    owner: Obj | None,
) -> Obj:
    """Volcano's gang: the session's first ``minMember`` pods are placed together or not at all."""
    min_member = max(1, math.ceil(min_instances / config.executors_per_pod))
    per_pod = config.executors_per_pod
    need = ResourceRequirement(
        cpu=resreq.cpu * per_pod * min_member,
        memory=resreq.memory * per_pod * min_member,
        gpu=resreq.gpu * per_pod * min_member,
    )
    metadata: Obj = {
        "name": name,
        "namespace": namespace,
        "labels": labels(cluster, session_id, application),
        "annotations": {ANNOTATION_SESSION: session_id},
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": PODGROUP_VERSION,
        "kind": "PodGroup",
        "metadata": metadata,
        "spec": {"minMember": min_member, "queue": config.queue, "minResources": quantities(need)},
    }


@dataclass(frozen=True)
class PodStatus:
    """What a pod's status says, as the provider acts on it."""

    phase: str
    failed: str | None = None  # the pod will not serve: reason and message
    unschedulable: str | None = None  # Pending with no node that fits: the scheduler's message
    started: bool = False  # its container runs


def pod_status(pod: Obj) -> PodStatus:
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    containers = status.get("containerStatuses") or []
    started = any("running" in (c.get("state") or {}) for c in containers)
    for c in containers:
        state = c.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            return PodStatus(phase, failed=_reason(waiting), started=started)
        terminated = state.get("terminated") or (c.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return PodStatus(phase, failed=_reason(terminated), started=started)
        if state.get("terminated") and phase == "Failed":
            code = terminated.get("exitCode")
            return PodStatus(phase, failed=f"{terminated.get('reason', 'Error')} (exit code {code})", started=started)
    if phase in ("Failed", "Succeeded"):
        reason = status.get("reason") or phase
        return PodStatus(phase, failed=f"{reason}: {status.get('message', 'the pod stopped')}")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return PodStatus(phase, unschedulable=condition.get("message", "no node fits the pod"))
    return PodStatus(phase, started=started)


def _reason(state: Obj) -> str:
    reason = state.get("reason", "")
    message = state.get("message")
    return f"{reason}: {message}" if message else reason
