"""Our SDK against a real local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest

import flame
from flame.testing import LocalCluster
from flame.types import ExecutorState
from tests.integration.conftest import wait_for


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as cluster:
        yield cluster


def test_100k_outstanding_tasks_cost_one_stream_and_no_threads(local: LocalCluster) -> None:
    with flame.connect(local.endpoint) as conn:
        # A session no node can hold: its tasks stay outstanding until it is closed.
        session = conn.create_session("flmping", resreq="cpu=1000,mem=1g")
        # The node's warm interpreters are started (a child watcher thread each) before counting.
        assert local.cluster is not None and local.cluster.node is not None
        node = local.cluster.node
        wait_for(lambda: node.warm_interpreters == 2)
        threads_before = threading.active_count()
        futures = [session.run(b"") for _ in range(100_000)]
        while conn.get_session(session.id).pending < 100_000:
            assert not any(f.done() for f in futures[:10]), futures[0].exception()
        assert threading.active_count() <= threads_before
        watchers = local.run(lambda sm: sm.controller.watcher_count(session.id))
        assert watchers == 1
        events = conn.get_session(session.id).events  # the scheduler says why nothing runs
        assert any(e.code == 1001 and "no node can hold" in (e.message or "") for e in events), events
        session.close()
        _, not_done = wait(futures, timeout=120)
        assert not not_done
        with pytest.raises(flame.TaskFailed, match="cancelled"):
            futures[-1].result()
        assert threading.active_count() <= threads_before


def test_executors_show_their_log_files(local: LocalCluster) -> None:
    with flame.connect(local.endpoint) as conn, conn.create_session("flmping", min_instances=1) as session:
        session.invoke(b"")
        executors = [e for e in conn.list_executors() if e.session_id == session.id]
        assert executors and executors[0].application == "flmping"
        log = Path(executors[0].log_file or "")
        assert log.is_file() and f"session {session.id}" in log.read_text()


def test_local_cluster_offers_as_many_executors_as_asked_for() -> None:
    with LocalCluster(executors=4) as cluster, flame.connect(cluster.endpoint) as conn:
        (node,) = conn.list_nodes()
        assert node.capacity.cpu == 4  # even on a machine with fewer cores
        with conn.create_session("flmping", min_instances=4) as session:
            deadline = time.monotonic() + 60
            while len([e for e in conn.list_executors() if e.session_id == session.id]) < 4:
                assert time.monotonic() < deadline, conn.list_executors()
                time.sleep(0.1)


def test_cancelling_a_pending_tasks_future_cancels_the_task(local: LocalCluster) -> None:
    with flame.connect(local.endpoint) as conn:
        session = conn.create_session("flmping", resreq="cpu=1000,mem=1g")  # nothing will run
        futures = [session.run(b"") for _ in range(3)]
        while conn.get_session(session.id).pending < 3:
            time.sleep(0.02)
        assert futures[1].cancel()
        deadline = time.monotonic() + 30
        while session.get_task("2").state != flame.TaskState.CANCELLED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "cancelled by the client" in (session.get_task("2").events[-1].message or "")
        assert [session.get_task(t).state for t in ("1", "3")] == [flame.TaskState.PENDING] * 2
        assert conn.get_session(session.id).cancelled == 1
        session.close()


def test_connect_reads_the_client_config_file(
    local: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLAME_ENDPOINT", raising=False)  # it would win over the file
    config = tmp_path / "flame.yaml"
    config.write_text(
        f"current-context: here\ncontexts:\n  - name: here\n    cluster:\n      endpoint: {local.endpoint}\n"
    )
    with flame.connect(config=config) as conn:
        assert conn.endpoint == local.endpoint
        assert [a.name for a in conn.list_applications()] == ["flmexec", "flmfunc", "flmping", "flmrun"]


def test_weighted_sessions_share_executors_by_weight() -> None:
    with LocalCluster(executors=4) as cluster, flame.connect(cluster.endpoint) as conn:
        heavy = conn.create_session("flmping", weight=3)
        light = conn.create_session("flmping", weight=1)
        with pytest.raises(flame.InvalidArgument, match="weight"):
            conn.create_session("flmping", weight=0)
        slow = json.dumps({"duration_ms": 300}).encode()
        futures = [s.run(slow) for _ in range(40) for s in (heavy, light)]
        held: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while held != {heavy.id: 3, light.id: 1}:
            assert time.monotonic() < deadline, held
            held = {}
            for e in conn.list_executors():
                if e.session_id is not None and e.state == ExecutorState.BOUND:
                    held[e.session_id] = held.get(e.session_id, 0) + 1
            time.sleep(0.1)
        for session in (heavy, light):
            session.close()
        wait(futures, timeout=60)


def test_a_program_that_connects_again_and_again_prints_no_errors(local: LocalCluster) -> None:
    # grpc.aio keeps state per event loop after a channel closes: connections that each closed a
    # loop of their own made grpc print "Event loop is closed" tracebacks on the next one.
    program = f"""
import threading
import flame
for _ in range(4):
    with flame.connect({local.endpoint!r}) as conn:
        with conn.create_session("flmping") as session:
            assert session.invoke(b"").startswith(b"{{")
print(threading.active_count())
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert int(done.stdout) <= 3  # the main thread, the one client loop, grpc's poller
