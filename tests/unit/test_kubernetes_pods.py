"""The Kubernetes provider's pure parts: pod and PodGroup manifests, reading pod status, pod plans."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from flame.config import KubernetesConfig, cluster_config_from_dict
from flame.session_manager.providers.kubernetes._pods import (
    PodRequest,
    label_value,
    pod_manifest,
    pod_name,
    pod_status,
    podgroup_manifest,
)
from flame.session_manager.providers.kubernetes._reconcile import Backoff, PodInfo, plan_pods
from flame.types import ExecutorState, ResourceRequirement
from tests.unit.test_scheduler_plan import executor, node, session, snap

R = ResourceRequirement(cpu=2, memory=2**30, gpu=1)
X = ExecutorState


def config(**provider: Any) -> KubernetesConfig:
    k = cluster_config_from_dict({"cluster": {"provider": {"kubernetes": provider}}}).provider
    assert k is not None
    return k


def test_pod_manifest_is_a_valid_pod_with_everything_configured() -> None:
    k = config(
        executors_per_pod=2,
        node_selector={"pool": "batch"},
        tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        service_account="flame-executor",
        image_pull_secrets=["regcred"],
        scheduler="volcano",
    )
    request = PodRequest(pod_name("flame", "S_1"), "S_1", "app", R, image="app:1", podgroup="pg")
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "flame-cluster", "uid": "u1"}
    pod = pod_manifest(k, "flame", "ns", request, owner)
    kubernetes_validate.validate(pod, "1.33", strict=True)
    container = pod["spec"]["containers"][0]
    assert container["image"] == "app:1"  # the application's image
    assert container["resources"]["limits"] == {"cpu": "4", "memory": str(2 * 2**30), "nvidia.com/gpu": "2"}
    assert container["args"][-4:] == ["--capacity", "cpu=4,mem=2g,gpu=2", "--max-executors", "2"]
    assert pod["spec"]["schedulerName"] == "volcano"
    assert pod["metadata"]["labels"]["flame.dev/session"] == label_value("S_1")
    assert pod["metadata"]["annotations"]["flame.dev/session-id"] == "S_1"
    assert len(request.name) <= 63 and request.name == request.name.lower()


def test_podgroup_min_member_from_min_instances() -> None:
    k = config(executors_per_pod=2, queue="q")
    group = podgroup_manifest(k, "flame", "ns", "pg", "s", "app", R, min_instances=5, owner=None)
    assert group["spec"] == {
        "minMember": 3,
        "queue": "q",
        "minResources": {"cpu": "12", "memory": str(6 * 2**30), "nvidia.com/gpu": "6"},
    }
    assert podgroup_manifest(k, "flame", "ns", "pg", "s", "app", R, 0, None)["spec"]["minMember"] == 1


def test_label_values_are_valid_and_distinct() -> None:
    long_a, long_b = "a" * 70 + "x", "a" * 70 + "y"
    assert label_value("plain-id") == "plain-id"
    assert label_value(long_a) != label_value(long_b)
    assert all(len(label_value(v)) <= 63 for v in (long_a, "a b/c", "_x_"))


def waiting(reason: str) -> dict[str, Any]:
    return {"status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": reason}}}]}}


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"])
def test_stuck_containers_are_failures(reason: str) -> None:
    assert (pod_status(waiting(reason)).failed or "").startswith(reason)


def test_status_reading() -> None:
    assert pod_status(waiting("ContainerCreating")).failed is None
    oom = {"status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"reason": "OOMKilled"}}}]}}
    assert pod_status(oom).failed == "OOMKilled"
    crashed = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"reason": "Error", "exitCode": 2}}}],
        }
    }
    assert pod_status(crashed).failed == "Error (exit code 2)"
    evicted = {"status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}}
    assert pod_status(evicted).failed == "Evicted: low on memory"
    pending = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
            ],
        }
    }
    assert pod_status(pending).unschedulable == "0/3 nodes"
    running = {"status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}}
    assert pod_status(running).started and pod_status(running).failed is None


def pods(*infos: PodInfo) -> dict[str, PodInfo]:
    return {p.name: p for p in infos}


def test_plan_counts_pods_on_their_way_and_limits() -> None:
    s = snap([session("a", pending=10, max_instances=4), session("b", pending=5)], [], [])
    on_way = pods(PodInfo("p1", "a", "app", 0.0))
    plan = plan_pods(on_way, {"a": 4, "b": 5}, s, {}, per_pod=1, max_pods=6, now=1.0)
    assert plan.create == {"a": 3, "b": 2}  # a: 4 wanted, 1 coming; b: what max_pods leaves
    assert plan.delete == []
    assert plan_pods(on_way, {"a": 4}, s, {}, per_pod=2, max_pods=6, now=1.0).create == {"a": 1}


def test_backoff_then_one_probe_then_give_up() -> None:
    s = snap([session("a", pending=3)], [], [])
    assert plan_pods({}, {"a": 3}, s, {"a": Backoff(1, retry_at=5.0)}, 1, 10, now=1.0).create == {}
    assert plan_pods({}, {"a": 3}, s, {"a": Backoff(1, retry_at=5.0)}, 1, 10, now=6.0).create == {"a": 1}
    assert plan_pods({}, {"a": 3}, s, {"a": Backoff(3, 0.0, gave_up=True)}, 1, 10, now=6.0).create == {}


def test_idle_and_surplus_pods_are_deleted() -> None:
    nodes = [node("busy"), node("idle"), node("closed")]
    executors = [executor("e1", X.BOUND, "a", node="busy"), executor("e2", X.IDLE, None, node="idle")]
    s = snap([session("a", pending=0, delay_release_ms=2000)], executors, nodes)
    state = pods(
        PodInfo("busy", "a", "app", 0.0),
        PodInfo("idle", "a", "app", 0.0),
        PodInfo("closed", "gone", "app", 0.0),
        PodInfo("coming", "a", "app", 0.0),
    )
    first = plan_pods(state, {}, s, {}, 1, 10, now=10.0)
    assert sorted(first.delete) == [("closed", "its session is closed"), ("coming", "no longer needed")]
    later = plan_pods(state, {}, s, {}, 1, 10, now=12.0)
    assert ("idle", "idle for 2000 ms (delay_release)") in later.delete
    assert all(name != "busy" for name, _ in later.delete)


def test_idle_pod_of_a_session_still_short_is_kept() -> None:
    s = snap([session("a", pending=1, delay_release_ms=0)], [], [node("idle")])
    state = pods(PodInfo("idle", "a", "app", 0.0))
    assert plan_pods(state, {"a": 1}, s, {}, 1, 10, now=100.0).delete == []
    assert plan_pods(state, {}, s, {}, 1, 10, now=100.0).delete == [("idle", "idle for 0 ms (delay_release)")]


def test_pods_get_the_cache_endpoint_and_their_node_token_from_a_secret() -> None:
    k = config(cache_endpoint="grpc://flame-object-cache.flame.svc:9090", token_secret="flame-node-token")
    request = PodRequest(pod_name("flame", "s"), "s", "app", R)
    pod = pod_manifest(k, "flame", "ns", request, None)
    kubernetes_validate.validate(pod, "1.33", strict=True)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["FLAME_CACHE_ENDPOINT"]["value"] == "grpc://flame-object-cache.flame.svc:9090"
    assert env["FLAME_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "flame-node-token", "key": "token"}}
    plain = pod_manifest(config(), "flame", "ns", request, None)
    assert {e["name"] for e in plain["spec"]["containers"][0]["env"]} == {"FLAME_SESSION_MANAGER", "FLAME_NODE_NAME"}
