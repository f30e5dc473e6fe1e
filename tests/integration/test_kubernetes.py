"""The Kubernetes provider end to end: the real provider and kr8s against the API emulation, whose
kubelet runs each pod's executor manager as a local process that connects back and runs tasks.

Every wait polls the condition with a deadline; the emulated pods start as fast as a process does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import flame
from flame.apps.flmping import flmping_application_spec
from flame.types import EVENT_SESSION_BIND_FAILED, EVENT_SESSION_BIND_GIVEN_UP
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
    conn.update_application(APP, spec)
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


def test_unschedulable_pod_gives_a_session_event(emulation: Emulation, cluster: KubeCluster) -> None:
    conn = connect(cluster)
    session = conn.create_session(APP, resreq="cpu=128,mem=1g")  # the emulated node has 64 cpus
    future = session.run(TASK)
    wait_for(lambda: any("cannot be scheduled" in e.message for e in events(conn, session.id)), timeout=30)
    event = next(e for e in events(conn, session.id) if "cannot be scheduled" in e.message)
    assert event.code == EVENT_SESSION_BIND_FAILED
    assert "Insufficient cpu" in event.message
    assert len(session_pods(emulation, session.id)) == 1  # it waits for room; no pod after pod
    assert not future.done()
    session.close()
    wait_for(lambda: emulation.pods() == [], timeout=30)  # the pending pod is not needed any more
    conn.close()


@pytest.mark.parametrize("fault", ["CrashLoopBackOff", "ImagePullBackOff"])
@pytest.mark.parametrize("cluster", [{"max_pod_failures": 2}], indirect=True)
def test_failing_pods_back_off_then_give_up_with_1002(emulation: Emulation, cluster: KubeCluster, fault: str) -> None:
    emulation.call(lambda: emulation.kubelet.faults.update({"broken:1": fault}))
    conn = connect(cluster, image="broken:1")
    session = conn.create_session(APP, max_instances=1)  # one pod at a time: each failure is one pod
    futures = [session.run(TASK) for _ in range(3)]
    wait_for(lambda: any(e.code == EVENT_SESSION_BIND_GIVEN_UP for e in events(conn, session.id)), timeout=30)
    failures = [e for e in events(conn, session.id) if e.code == EVENT_SESSION_BIND_FAILED and fault in e.message]
    assert len(failures) == 2
    for future in futures:
        with pytest.raises(flame.errors.TaskFailed, match="gave up after 2 failed pods"):
            future.result(timeout=10)
    wait_for(lambda: emulation.pods() == [], timeout=30)
    creates = emulation.pod_creates()
    assert creates == 2  # one per failure: after a failure it probes with one pod, then stops
    conn.close()


@pytest.mark.parametrize("kill", ["delete", "oom"])
def test_pod_killed_mid_task_requeues_it_and_it_succeeds_elsewhere(
    emulation: Emulation, cluster: KubeCluster, kill: str
) -> None:
    conn = connect(cluster)
    session = conn.create_session(APP, max_instances=2)
    futures = [session.run(b'{"duration_ms": 1500}') for _ in range(2)]
    wait_for(lambda: conn.get_session(session.id).running == 2, timeout=30)
    victim = session_pods(emulation, session.id)[0]["metadata"]["name"]
    if kill == "delete":
        emulation.expire_watches()  # and the provider has to list again to learn of it
        emulation.delete_pod(victim)
    else:
        emulation.call(lambda: emulation.kubelet.oom_kill(victim))
    results = [json.loads(f.result(timeout=60)) for f in futures]
    assert all(not r["executor"].startswith(victim) for r in results)
    told = "was deleted" if kill == "delete" else "OOMKilled"
    assert any(victim in e.message and told in e.message for e in events(conn, session.id))
    conn.close()


def test_restarted_session_manager_adopts_pods_and_deletes_orphans(emulation: Emulation, tmp_path: Path) -> None:
    cluster = KubeCluster(emulation, tmp_path / "sm", storage="sqlite://flame.db").start()
    try:
        conn = connect(cluster)
        session = conn.create_session(APP, min_instances=2)
        wait_for(lambda: len([n for n in conn.list_nodes()]) == 2, timeout=30)
        pods = {p["metadata"]["name"] for p in emulation.live_pods()}
        conn.close()
        cluster.stop()
        orphan = orphan_pod(emulation)
        creates = emulation.pod_creates()
        cluster.start()
        conn = flame.connect(cluster.endpoint)
        wait_for(lambda: {n.name for n in conn.list_nodes()} == pods, timeout=30)
        assert (
            json.loads(conn.get_session(session.id).run(TASK).result(timeout=30))["executor"].rsplit("-", 1)[0] in pods
        )
        wait_for(lambda: orphan not in {p["metadata"]["name"] for p in emulation.pods()}, timeout=30)
        assert {p["metadata"]["name"] for p in emulation.live_pods()} == pods
        assert emulation.pod_creates() == creates  # adopted, none made again
        conn.close()
    finally:
        cluster.close()


def orphan_pod(emulation: Emulation) -> str:
    """A pod of the cluster for a session that does not exist (left by an earlier session manager)."""
    from flame.config import KubernetesConfig
    from flame.session_manager.providers.kubernetes._pods import PodRequest, pod_manifest
    from flame.types import ResourceRequirement
    from tests.kube.emulation import NAMESPACE
    from tests.kube.http import Request

    request = PodRequest("flame-flame-gone-000000", "gone", APP, ResourceRequirement(cpu=1, memory=2**28))
    body = pod_manifest(KubernetesConfig(), "flame", NAMESPACE, request, None)
    body["spec"]["containers"][0]["command"] = ["sleep"]
    body["spec"]["containers"][0]["args"] = ["600"]
    response = emulation.run(emulation.api.handle(Request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {}, body)))
    assert response.status == 201
    return request.name


@pytest.mark.parametrize("cluster", [{"scheduler": "volcano", "queue": "research"}], indirect=True)
def test_volcano_podgroup_per_session(emulation: Emulation, cluster: KubeCluster) -> None:
    conn = connect(cluster)
    session = conn.create_session(APP, min_instances=3)
    wait_for(lambda: len(session_pods(emulation, session.id)) == 3, timeout=30)
    (group,) = emulation.podgroups()
    assert group["spec"]["minMember"] == 3 and group["spec"]["queue"] == "research"
    assert group["spec"]["minResources"] == {"cpu": "3", "memory": str(3 * 256 * 2**20)}
    for pod in session_pods(emulation, session.id):
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == group["metadata"]["name"]
    assert json.loads(session.run(TASK).result(timeout=30))["session"] == session.id
    session.close()
    wait_for(lambda: emulation.podgroups() == [], timeout=30)  # gone with the session's last pod
    conn.close()


def test_in_a_pod_the_provider_uses_its_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig: kr8s reads the service account's token and CA, over https, as in a pod."""
    emulation = Emulation(tmp_path).start(in_cluster=True)
    try:
        port = emulation.url.rsplit(":", 1)[1]
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config to find first
        monkeypatch.delenv("KUBECONFIG", raising=False)
        cluster = KubeCluster(
            emulation, tmp_path / "sm", kubeconfig=None, service_account_dir=str(emulation.service_account)
        )
        assert cluster.config.provider is not None and cluster.config.provider.kubeconfig is None
        cluster.start()
        try:
            conn = connect(cluster)
            session = conn.create_session(APP)
            assert all(f.result(timeout=60) for f in [session.run(TASK) for _ in range(4)])
            assert emulation.pods() and emulation.refused == 0  # every call carried the account's token
            session.close()
            conn.close()
        finally:
            cluster.close()
    finally:
        emulation.stop()
