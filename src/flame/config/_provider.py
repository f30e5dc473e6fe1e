"""``cluster.provider``: who adds nodes when the registered ones are full (none, or Kubernetes pods).

Written either as a name (``provider: none``, ``provider: kubernetes`` with every default) or as a
mapping with one key, the provider's name, holding its settings::

    provider:
      kubernetes:
        namespace: flame
        image: flame-python:0.1.0
        session_manager: http://flame-session-manager.flame.svc:8080
        max_pods: 20
        scheduler: volcano   # optional: gang scheduling through a PodGroup per session
        queue: default
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flame.config._endpoint import Endpoint, parse_cache_endpoint, parse_endpoint_from
from flame.config._values import Section
from flame.errors import InvalidArgument

PROVIDERS = ("none", "kubernetes")
SCHEDULERS = ("default", "volcano")
DEFAULT_IMAGE = "flame-python:0.1.0"
DEFAULT_POD_ENDPOINT = "http://flame-session-manager:8080"
DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_KEYS = (
    "namespace",
    "image",
    "image_pull_policy",
    "session_manager",
    "max_pods",
    "executors_per_pod",
    "node_selector",
    "tolerations",
    "service_account",
    "image_pull_secrets",
    "scheduler",
    "queue",
    "kubeconfig",
    "context",
    "service_account_dir",
    "owner_configmap",
    "max_pod_failures",
    "failure_backoff",
    "cache_endpoint",
    "token_secret",
)
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")


@dataclass(frozen=True)
class KubernetesConfig:
    """Executor-manager pods made on demand in one namespace. Times in seconds."""

    namespace: str | None = None  # None: the service account's namespace, else the kubeconfig context's
    image: str = DEFAULT_IMAGE  # the executor manager's image (an application's own image overrides it)
    image_pull_policy: str = "IfNotPresent"
    session_manager: Endpoint = field(default_factory=lambda: parse_endpoint_from(DEFAULT_POD_ENDPOINT, "", ""))
    max_pods: int = 10
    executors_per_pod: int = 1
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[dict[str, Any], ...] = ()
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    scheduler: str = "default"
    queue: str = "default"  # Volcano's queue, with scheduler: volcano
    kubeconfig: str | None = None  # None: in-cluster service account, else $KUBECONFIG or ~/.kube/config
    context: str | None = None
    # In a pod, without a kubeconfig: where the service account's token, ca.crt and namespace are.
    service_account_dir: str = DEFAULT_SERVICE_ACCOUNT_DIR
    owner_configmap: str | None = None  # pods are owned by this ConfigMap (garbage-collected with it)
    max_pod_failures: int = 3  # pods of a session failing in a row before it gives up (event 1002)
    failure_backoff: float = 2.0  # wait after a failed pod, doubled after each further one
    cache_endpoint: str | None = None  # the object cache, as pods and their services reach it
    token_secret: str | None = None  # a Secret whose key ``token`` is the pods' node token (auth token)


def parse_provider(cluster: Section) -> KubernetesConfig | None:
    """``cluster.provider``: None for ``none`` (executor managers register themselves)."""
    raw = cluster.raw("provider")
    if raw is None or raw == "none":
        return None
    if raw == "kubernetes":
        return KubernetesConfig()
    accepted = "none, kubernetes, or a mapping with one of them as its only key"
    if not isinstance(raw, dict):
        raise cluster.error("provider", raw, accepted)
    if len(raw) != 1 or next(iter(raw)) not in PROVIDERS:
        raise InvalidArgument(
            f"{cluster.source}: invalid {cluster.key('provider')} keys {sorted(map(str, raw))}: expected {accepted}"
        )
    if "none" in raw:
        return None
    return _kubernetes(cluster.section("provider").section("kubernetes"))


def _kubernetes(section: Section) -> KubernetesConfig:
    section.check_keys(_KEYS)
    namespace = section.optional_string("namespace")
    if namespace is not None and not _DNS_LABEL.match(namespace):
        raise section.error("namespace", namespace, "a namespace name (lower-case letters, digits and '-')")
    policy = section.string("image_pull_policy", "IfNotPresent")
    if policy not in _PULL_POLICIES:
        raise section.error("image_pull_policy", policy, f"one of: {', '.join(_PULL_POLICIES)}")
    scheduler = section.string("scheduler", "default")
    if scheduler not in SCHEDULERS:
        raise section.error("scheduler", scheduler, f"one of: {', '.join(SCHEDULERS)}")
    endpoint_text = section.string("session_manager", DEFAULT_POD_ENDPOINT)
    endpoint = parse_endpoint_from(endpoint_text, section.key("session_manager"), section.source)
    if endpoint.port == 0:
        raise section.error("session_manager", endpoint_text, "an endpoint pods can connect to (port 0 cannot be)")
    return KubernetesConfig(
        namespace=namespace,
        image=section.string("image", DEFAULT_IMAGE),
        image_pull_policy=policy,
        session_manager=endpoint,
        max_pods=section.integer("max_pods", 10, 1),
        executors_per_pod=section.integer("executors_per_pod", 1, 1),
        node_selector=_string_map(section, "node_selector"),
        tolerations=_tolerations(section),
        service_account=_name(section, "service_account"),
        image_pull_secrets=_names(section, "image_pull_secrets"),
        scheduler=scheduler,
        queue=section.string("queue", "default"),
        kubeconfig=section.optional_string("kubeconfig"),
        context=section.optional_string("context"),
        service_account_dir=section.string("service_account_dir", DEFAULT_SERVICE_ACCOUNT_DIR),
        owner_configmap=_name(section, "owner_configmap"),
        max_pod_failures=section.integer("max_pod_failures", 3, 1),
        failure_backoff=section.number("failure_backoff", 2.0, 0, inclusive=True, unit="seconds"),
        cache_endpoint=_cache_endpoint(section),
        token_secret=_name(section, "token_secret"),
    )


def _cache_endpoint(section: Section) -> str | None:
    if not section.has("cache_endpoint"):
        return None
    endpoint = parse_cache_endpoint(section.raw("cache_endpoint"), section.key("cache_endpoint"), section.source)
    if endpoint.port == 0:
        raise section.error("cache_endpoint", section.raw("cache_endpoint"), "an endpoint pods can reach (not port 0)")
    return f"{'grpcs' if endpoint.tls else 'grpc'}://{endpoint.host}:{endpoint.port}"


def _name(section: Section, key: str) -> str | None:
    value = section.optional_string(key)
    if value is not None and not _DNS_SUBDOMAIN.match(value):
        raise section.error(key, value, "a Kubernetes object name (lower-case letters, digits, '-' and '.')")
    return value


def _names(section: Section, key: str) -> tuple[str, ...]:
    raw = section.raw(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise section.error(key, raw, "a list of Secret names")
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not _DNS_SUBDOMAIN.match(item):
            raise section.error(f"{key}[{index}]", item, "a Secret name (lower-case letters, digits, '-' and '.')")
    return tuple(raw)


def _string_map(section: Section, key: str) -> tuple[tuple[str, str], ...]:
    raw = section.raw(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise section.error(key, raw, "a mapping of label names to string values")
    return tuple(sorted(raw.items()))


def _tolerations(section: Section) -> tuple[dict[str, Any], ...]:
    raw = section.raw("tolerations")
    if raw is None:
        return ()
    expected = f"a list of tolerations, each a mapping with keys from: {', '.join(_TOLERATION_KEYS)}"
    if not isinstance(raw, list):
        raise section.error("tolerations", raw, expected)
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not item or not set(item) <= set(_TOLERATION_KEYS):
            raise section.error(f"tolerations[{index}]", item, expected)
    return tuple(dict(item) for item in raw)
