"""executor_manager.metrics_port: a second node's executor manager (a real process) serves /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import flame
from flame.testing import LocalCluster
from tests.integration.conftest import free_port, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


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
                wait_for(lambda: cluster.run(lambda sm: len(sm.controller.sessions[session.id].executors) == 2))
                for future in [session.run(b"") for _ in range(200)]:
                    future.result(60)
                session.close()
            node = (("application", "flmping"), ("node", "second"))
            values = wait_for(
                lambda: (v := scrape(port)).get(
                    ("flame_executor_service_exits_total", (("node", "second"), ("reason", "unbound")))
                )
                and v
            )
            assert values[("flame_executor_services_started_total", node)] == 1  # type: ignore[index]
            invoked = values.get(
                ("flame_executor_invoke_seconds_count", (("node", "second"), ("outcome", "succeed"))), 0
            )  # type: ignore[union-attr]
            assert invoked >= 1
        finally:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
