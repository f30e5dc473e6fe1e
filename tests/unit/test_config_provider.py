"""cluster.provider: none by default; kubernetes by name or with settings; bad values named precisely."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flame.config import KubernetesConfig, cluster_config_from_dict
from flame.errors import InvalidArgument


def provider(value: Any) -> KubernetesConfig | None:
    return cluster_config_from_dict({"cluster": {"provider": value}}).provider


def test_default_and_none_mean_no_provider() -> None:
    assert cluster_config_from_dict({}).provider is None
    assert provider("none") is None
    assert provider({"none": None}) is None


def test_kubernetes_by_name_takes_every_default() -> None:
    assert provider("kubernetes") == KubernetesConfig()


def test_kubernetes_settings() -> None:
    k = provider(
        {
            "kubernetes": {
                "namespace": "flame",
                "image": "registry.example/flame:1",
                "session_manager": "http://sm.flame.svc:9000",
                "max_pods": 4,
                "executors_per_pod": 2,
                "node_selector": {"pool": "batch"},
                "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
                "service_account": "flame-executor",
                "image_pull_secrets": ["regcred"],
                "scheduler": "volcano",
                "queue": "research",
                "max_pod_failures": 2,
                "failure_backoff": 0.5,
            }
        }
    )
    assert k is not None
    assert (k.namespace, k.max_pods, k.executors_per_pod, k.scheduler, k.queue) == (
        "flame",
        4,
        2,
        "volcano",
        "research",
    )
    assert k.session_manager.address == "sm.flame.svc:9000"
    assert k.node_selector == (("pool", "batch"),)
    assert k.image_pull_secrets == ("regcred",)
    assert k.failure_backoff == 0.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k8s", "invalid cluster.provider 'k8s': expected none, kubernetes"),
        ({"kubernetes": {}, "none": {}}, "expected none, kubernetes, or a mapping"),
        (
            {"kubernetes": {"max_pod": 3}},
            "unknown key 'cluster.provider.kubernetes.max_pod' (did you mean 'max_pods'?)",
        ),
        (
            {"kubernetes": {"max_pods": 0}},
            "invalid cluster.provider.kubernetes.max_pods 0: expected a whole number >= 1",
        ),
        ({"kubernetes": {"namespace": "Flame_NS"}}, "invalid cluster.provider.kubernetes.namespace 'Flame_NS'"),
        ({"kubernetes": {"scheduler": "kube-batch"}}, "expected one of: default, volcano"),
        ({"kubernetes": {"image_pull_policy": "always"}}, "expected one of: Always, IfNotPresent, Never"),
        ({"kubernetes": {"session_manager": "http://sm:0"}}, "port 0 cannot be"),
        ({"kubernetes": {"node_selector": ["a"]}}, "a mapping of label names to string values"),
        ({"kubernetes": {"tolerations": [{"colour": "red"}]}}, "tolerations[0]"),
        ({"kubernetes": {"image_pull_secrets": ["Bad Name"]}}, "image_pull_secrets[0]"),
    ],
)
def test_bad_values_are_named(value: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        provider(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("cache_endpoint", "ftp://cache:9090", "grpc://host:port or grpcs://host:port"),
        ("cache_endpoint", "grpc://cache:0", "an endpoint pods can reach"),
        ("token_secret", "Not_A_Name", "a Kubernetes object name"),
    ],
)
def test_bad_cache_endpoint_and_token_secret_are_named(key: str, value: str, accepted: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"provider\.kubernetes\.{key}.*{re.escape(accepted)}"):
        provider({"kubernetes": {key: value}})


def test_token_auth_with_pods_needs_the_pods_node_token(tmp_path: Any) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens: [{name: a, role: admin, token: 0123456789abcdef0123}]\n")
    auth = {"mode": "token", "tokens_file": str(tokens)}
    with pytest.raises(InvalidArgument, match=r"set cluster\.provider\.kubernetes\.token_secret"):
        cluster_config_from_dict({"cluster": {"auth": auth, "provider": "kubernetes"}})
    k = cluster_config_from_dict(
        {"cluster": {"auth": auth, "provider": {"kubernetes": {"token_secret": "flame-node-token"}}}}
    ).provider
    assert k is not None and k.token_secret == "flame-node-token"
