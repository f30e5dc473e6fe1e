"""deploy/base renders, every object validates against the Kubernetes schema, and the config in it loads.

Rendered with ``kubectl kustomize`` when kubectl is installed, and always with a small loader of
the kustomize features the base uses (namespace, labels, resources), which must agree with kubectl.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from flame.config import cache_config_from_dict, cluster_config_from_dict

BASE = Path(__file__).resolve().parents[2] / "deploy" / "base"
K8S_VERSION = "1.33"
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

Obj = dict[str, Any]


def render_python(base: Path) -> list[Obj]:
    """The subset of kustomize this base uses; anything else is refused, not ignored."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "namespace", "labels", "resources"}
    assert not unknown, f"the test's kustomize loader does not know {unknown}: extend it"
    namespace = kustomization.get("namespace")
    objects: list[Obj] = []
    for resource in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((base / resource).read_text()) if d]
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        if namespace and obj["kind"] not in _CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        if namespace and obj["kind"] == "Namespace":
            metadata["name"] = namespace
        for group in kustomization.get("labels", []):
            metadata.setdefault("labels", {}).update(group["pairs"])
            if group.get("includeSelectors"):
                raise AssertionError("includeSelectors is not handled by the test's loader")
    return objects


def render_kubectl(base: Path) -> list[Obj]:
    out = subprocess.run(["kubectl", "kustomize", str(base)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render_python(BASE)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_renders_the_same_objects(objects: list[Obj]) -> None:
    rendered = render_kubectl(BASE)
    assert sorted(map(key, rendered)) == sorted(map(key, objects))
    by_key = {key(o): o for o in objects}
    for obj in rendered:
        assert obj == by_key[key(obj)], f"{key(obj)} differs between kubectl and the test's loader"


def test_every_object_validates(objects: list[Obj]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert {"PersistentVolumeClaim", "Namespace"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_rights_are_namespaced_and_limited(objects: list[Obj]) -> None:
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    (role,) = [o for o in objects if o["kind"] == "Role"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("", "pods"), ("", "events"), ("", "configmaps"), ("scheduling.volcano.sh", "podgroups")}
    for rule in role["rules"]:
        if rule["resources"] == ["configmaps"]:
            assert rule["resourceNames"] == ["flame-cluster"] and rule["verbs"] == ["get"]
        else:
            assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "delete"}


def test_the_config_map_is_a_valid_cluster_config_for_the_objects_around_it(objects: list[Obj]) -> None:
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    config = cluster_config_from_dict(yaml.safe_load(configmap["data"]["flame-cluster.yaml"]), "configmap")
    provider = config.provider
    assert provider is not None
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    host, _, namespace = provider.session_manager.host.partition(".")
    assert host in services and namespace.split(".")[0] == provider.namespace == configmap["metadata"]["namespace"]
    assert provider.session_manager.port == services[host]["spec"]["ports"][0]["port"]
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    assert provider.service_account in accounts and provider.owner_configmap == configmap["metadata"]["name"]
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in accounts


def test_the_object_cache_loads_the_same_config_and_pods_reach_it_through_its_service(objects: list[Obj]) -> None:
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    data = yaml.safe_load(configmap["data"]["flame-cluster.yaml"])
    cache = cache_config_from_dict(data, "configmap")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    container = deployments["flame-object-cache"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["flame", "object-cache"]
    assert container["ports"][0]["containerPort"] == cache.endpoint.port
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert cache.storage == f"fs://{mounts['objects']}"
    provider = cluster_config_from_dict(data, "configmap").provider
    assert provider is not None and provider.cache_endpoint is not None
    host, _, port = provider.cache_endpoint.removeprefix("grpc://").partition(":")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    name, _, namespace = host.partition(".")
    assert namespace.split(".")[0] == configmap["metadata"]["namespace"]
    assert int(port) == services[name]["spec"]["ports"][0]["port"]
    assert services[name]["spec"]["selector"] == deployments["flame-object-cache"]["spec"]["selector"]["matchLabels"]


def test_with_token_auth_the_object_cache_asks_the_session_manager_through_its_service(objects: list[Obj]) -> None:
    """The README's step to secure the base (mode token) is all the cache needs to hold users to their sessions."""
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    data = yaml.safe_load(configmap["data"]["flame-cluster.yaml"])
    data["cluster"]["auth"] = {"mode": "token", "tokens_file": "/etc/flame/auth/tokens.yaml"}
    asks = cache_config_from_dict(data, "configmap").session_manager
    assert asks is not None
    name, _, namespace = asks.endpoint.host.partition(".")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert namespace.split(".")[0] == configmap["metadata"]["namespace"]
    assert asks.endpoint.port == services[name]["spec"]["ports"][0]["port"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert services[name]["spec"]["selector"] == deployments["flame-session-manager"]["spec"]["selector"]["matchLabels"]
