"""executor_manager.metrics_port: a second node's executor manager (a real process) serves /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import cast

from prometheus_client.parser import text_string_to_metric_families

import flame
from flame.session_manager.server import SessionManager
from flame.testing import LocalCluster
from flame.types import ExecutorState
from tests.integration.conftest import free_port, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def bound_nodes(sm: SessionManager, session_id: str) -> list[str]:
    controller = sm.controller
    executors = [controller.executors[e].executor for e in controller.sessions[session_id].executors]
    return [e.node for e in executors if e.state == ExecutorState.BOUND]


def test_services_started_invokes_and_exits_are_counted(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "flame-cluster.yaml"
    config.write_text(f"executor_manager:\n  metrics_port: {port}\n")
    with LocalCluster(executors=1) as cluster:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
        agent = subprocess.Popen(
            [
                *(sys.executable, "-m", "flame", "--log-level", "WARNING", "executor-manager", "-c", str(config)),
                *("--session-manager", cluster.endpoint, "--node-name", "second", "--work-dir", str(tmp_path / "w")),
                *("--max-executors", "1", "--capacity", "cpu=1,mem=1g"),
            ],
            env=env,
        )
        try:
            wait_for(lambda: cluster.run(lambda sm: "second" in sm.controller.nodes), timeout=30)
            with flame.connect(cluster.endpoint) as conn:
                session = conn.create_session("flmping", min_instances=2)
                # Both bound before the work starts, so neither bind is abandoned by the close below.
                wait_for(
                    lambda: cluster.run(lambda sm: len(nodes := bound_nodes(sm, session.id)) == 2 and "second" in nodes)
                )
                # Tasks that take a while, so the second node's executor runs some of them too.
                for future in [session.run(b'{"duration_ms": 20}') for _ in range(40)]:
                    future.result(60)
                session.close()
            node = (("application", "flmping"), ("node", "second"))
            values = cast(
                Samples,
                wait_for(
                    lambda: (v := scrape(port)).get(
                        ("flame_executor_service_exits_total", (("node", "second"), ("reason", "unbound")))
                    )
                    and v
                ),
            )
            assert values[("flame_executor_services_started_total", node)] == 1
            invoked = values.get(
                ("flame_executor_invoke_seconds_count", (("node", "second"), ("outcome", "succeed"))), 0
            )
            assert invoked >= 1
        finally:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
