"""The Kubernetes provider against the API emulation (tests/kube): how fast it makes pods, and how
long a session's first task waits for a pod of its own.

1. Pods created per second: one session with --pods tasks on a cluster with no nodes and
   max_pods --pods; the emulated node has no room, so pods stay Pending (nothing runs) and the
   figure is the provider's alone. Baseline: the same pods created one at a time with kr8s.
2. First task to result in a new pod: a fresh session's one task (0 ms) on a cluster with no
   pods, so the time covers the pod's creation, its emulated start (the executor manager starting
   as a local process), registration, the executor and service starting, and the task. Baseline:
   the same on an all-in-one cluster whose node is already registered.

    flock /tmp/flame-bench.lock python benchmarks/kubernetes_pods.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the emulation lives in tests/

import kr8s.asyncio
from kr8s.asyncio.objects import Pod

import flame
from flame.apps.flmping import flmping_application_spec
from flame.config import KubernetesConfig
from flame.session_manager.providers.kubernetes._pods import PodRequest, pod_manifest
from flame.testing import LocalCluster
from flame.types import ResourceRequirement
from tests.kube.cluster import KubeCluster
from tests.kube.emulation import NAMESPACE, Emulation

APP = "bench-ping"


def wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.002)


def provider_rate(pods: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        emulation = Emulation(Path(tmp), cpu=0, memory=0).start()
        cluster = KubeCluster(emulation, Path(tmp) / "sm", max_pods=pods).start()
        try:
            conn = flame.connect(cluster.endpoint)
            conn.register_application(APP, flmping_application_spec())
            session = conn.create_session(APP)
            started = time.monotonic()
            futures = [session.run(b"") for _ in range(pods)]
            wait(lambda: emulation.pod_creates() >= pods, 120)
            took = time.monotonic() - started
            assert emulation.pod_creates() == pods
            del futures
            conn.close()
        finally:
            cluster.close()
            emulation.stop()
    return pods / took


def baseline_rate(pods: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        emulation = Emulation(Path(tmp), cpu=0, memory=0).start()
        try:

            async def create_all() -> float:
                api = await kr8s.asyncio.api(kubeconfig=str(emulation.kubeconfig))
                config = KubernetesConfig()
                slot = ResourceRequirement(cpu=1, memory=256 * 2**20)
                started = time.monotonic()
                for i in range(pods):
                    request = PodRequest(f"baseline-{i}", "s", APP, slot)
                    await Pod(pod_manifest(config, "flame", NAMESPACE, request, None), api=api).create()
                return time.monotonic() - started

            took = asyncio.run(create_all())
        finally:
            emulation.stop()
    return pods / took


def first_task_in_new_pod() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        emulation = Emulation(Path(tmp)).start()
        cluster = KubeCluster(emulation, Path(tmp) / "sm").start()
        try:
            conn = flame.connect(cluster.endpoint)
            conn.register_application(APP, flmping_application_spec())
            session = conn.create_session(APP)
            started = time.monotonic()
            session.run(b"").result(timeout=120)
            took = time.monotonic() - started
            conn.close()
        finally:
            cluster.close()
            emulation.stop()
    return took


def first_task_on_registered_node() -> float:
    with LocalCluster(executors=1) as local:
        conn = flame.connect(local.endpoint)
        conn.register_application(APP, flmping_application_spec())
        wait(lambda: len(conn.list_nodes()) == 1, 30)
        session = conn.create_session(APP)
        started = time.monotonic()
        session.run(b"").result(timeout=120)
        took = time.monotonic() - started
        conn.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200, help="pods to create in the rate run (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; medians are shown")
    args = parser.parse_args()
    ours = statistics.median(provider_rate(args.pods) for _ in range(args.repeat))
    base = statistics.median(baseline_rate(args.pods) for _ in range(args.repeat))
    print(f"pods created/s: provider {ours:.0f}, kr8s one at a time {base:.0f}, ratio {ours / base:.2f}")
    pod = statistics.median(first_task_in_new_pod() for _ in range(args.repeat))
    node = statistics.median(first_task_on_registered_node() for _ in range(args.repeat))
    print(
        f"first task to result: in a new pod {pod:.2f} s, on a registered node {node:.2f} s, "
        f"ratio {pod / node:.2f} (median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
