"""The Kubernetes provider end to end: the real provider and kr8s against the API emulation, whose
kubelet runs each pod's executor manager as a local process that connects back and runs tasks.

Every wait polls the condition with a deadline; the emulated pods start as fast as a process does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import flame
from flame.apps.flmping import flmping_application_spec
from flame.types import EVENT_SESSION_BIND_FAILED, EVENT_SESSION_BIND_GIVEN_UP, TaskState
from tests.integration.conftest import wait_for
from tests.kube.cluster import KubeCluster
from tests.kube.emulation import Emulation
from tests.kube.pods import LABEL_SESSION

APP = "flmping"
DELAY_RELEASE_S = 1
TASK = b'{"duration_ms": 200}'


@pytest.fixture
def emulation(tmp_path: Path) -> Iterator[Emulation]:
    emulation = Emulation(tmp_path).start()
    yield emulation
    emulation.stop()


def connect(cluster: KubeCluster, image: str | None = None) -> flame.Connection:
    conn = flame.connect(cluster.endpoint)
    spec = replace(flmping_application_spec(), delay_release=DELAY_RELEASE_S, image=image)
    conn.register_application(APP, spec)
    return conn


def session_pods(emulation: Emulation, session_id: str) -> list[dict[str, object]]:
    return [p for p in emulation.live_pods() if p["metadata"]["labels"][LABEL_SESSION] == session_id]


def events(conn: flame.Connection, session_id: str) -> list[flame.types.Event]:
    return conn.get_session(session_id).events


@pytest.fixture
def cluster(emulation: Emulation, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    settings = getattr(request, "param", {})
    cluster = KubeCluster(emulation, tmp_path / "sm", **settings).start()
    yield cluster
    cluster.close()


@pytest.mark.parametrize("cluster", [{"max_pods": 4}], indirect=True)
def test_backlog_gets_pods_tasks_run_in_them_and_idle_pods_go(emulation: Emulation, cluster: KubeCluster) -> None:
    conn = connect(cluster)
    assert emulation.live_pods() == []  # no work, no pods
    capped = conn.create_session(APP, max_instances=3)
    wide = conn.create_session(APP)
    futures = [capped.run(TASK) for _ in range(30)]
    most: dict[str, int] = {}
    while not all(f.done() for f in futures):
        pods = emulation.live_pods()
        most["all"] = max(most.get("all", 0), len(pods))
        most["capped"] = max(most.get("capped", 0), len(session_pods(emulation, capped.id)))
        time.sleep(0.05)
        if len(most) == 2 and most["capped"] == 3:
            wide_futures = [wide.run(TASK) for _ in range(20)] if "wide" not in most else []
            most.setdefault("wide", 0)
            futures += wide_futures
    hosts = {f.result(timeout=5) for f in futures}
    assert len(hosts) > 1  # ran in more than one pod
    assert most["capped"] <= 3 and most["all"] <= 4
    pod = emulation.live_pods()[0]
    labels = pod["metadata"]["labels"]
    assert labels["flame.dev/cluster"] == "flame" and labels["flame.dev/application"] == APP
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ConfigMap"
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": str(256 * 2**20)}
    nodes = {n.name for n in conn.list_nodes()}
    assert {p["metadata"]["name"] for p in emulation.live_pods()} <= nodes  # each pod is a node

    closed = time.monotonic()
    capped.close()
    wide.close()
    wait_for(lambda: emulation.live_pods() == [], timeout=DELAY_RELEASE_S + 10)
    took = time.monotonic() - closed
    print(f"\npods deleted {took:.2f} s after the sessions closed (delay_release {DELAY_RELEASE_S} s)")
    assert took < DELAY_RELEASE_S + 0.1 + 5  # delay_release, one cycle, and a loaded machine's slack
    wait_for(lambda: emulation.pods() == [], timeout=30)  # the executor managers exited
    conn.close()
