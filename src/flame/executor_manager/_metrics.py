"""The executor manager's Prometheus metrics, served on ``executor_manager.metrics_port``.

Services started, bind failures, service exits and how long each task's invoke took at the
service. Counted on the agent's event loop and served by prometheus_client's own small HTTP
server (a daemon thread): the agent has no other HTTP server to share.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)

INVOKE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class AgentMetrics:
    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.services_started = Counter(
            "flame_executor_services_started",
            "Service processes started and bound to a session.",
            ["node", "application"],
            registry=self.registry,
        )
        self.bind_failures = Counter(
            "flame_executor_bind_failures",
            "Bindings that failed (the service did not start, listen or enter the session).",
            ["node", "application"],
            registry=self.registry,
        )
        self.service_exits = Counter(
            "flame_executor_service_exits",
            "Service processes that went away: unbound (asked to) or lost (died, hung up).",
            ["node", "reason"],
            registry=self.registry,
        )
        self.invoke_seconds = Histogram(
            "flame_executor_invoke_seconds",
            "Time from handing a task to its service to the service's answer, by outcome.",
            ["node", "outcome"],
            buckets=INVOKE_BUCKETS,
            registry=self.registry,
        )
        self.node = node
        self._server: Any = None
        self.port = 0
        self._invoke_by_outcome: dict[str, Any] = {}  # the histogram's children, looked up once

    def started(self, application: str) -> None:
        self.services_started.labels(self.node, application).inc()

    def bind_failed(self, application: str) -> None:
        self.bind_failures.labels(self.node, application).inc()

    def exited(self, reason: str) -> None:
        self.service_exits.labels(self.node, reason).inc()

    def invoked(self, seconds: float, outcome: str) -> None:
        """Once per task: the labelled child is kept (labels() costs more than the observation)."""
        child = self._invoke_by_outcome.get(outcome)
        if child is None:
            child = self._invoke_by_outcome[outcome] = self.invoke_seconds.labels(self.node, outcome)
        child.observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on ``host:port`` (0: any free port); return the port."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {host}:{port} (executor_manager.metrics_port): {exc}") from exc
        self._server = server
        self.port = int(server.server_address[1])
        logger.info("executor manager metrics at http://%s:%d/metrics", host, self.port)
        return self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
