"""The dashboard as the session manager holds it: state, metrics and hooks, without the web server.

The session manager makes its :class:`Dashboard` before its gRPC server (whose calls the metrics
count) and starts the HTTP side later: ``start()`` loads aiohttp (:mod:`flame.dashboard._server`)
only then, so a cluster's ports listen without waiting for the web stack to import.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING

from flame.config import DashboardConfig, TlsConfig
from flame.dashboard._grpc import CallCounter
from flame.dashboard._metrics import Metrics
from flame.dashboard._publisher import Publisher
from flame.dashboard._state import ClusterState

if TYPE_CHECKING:
    from flame.dashboard._server import WebServer
    from flame.session_manager.controller import Controller
    from flame.session_manager.scheduler import Decision

COOKIE = "flame_dashboard_token"


class Dashboard:
    """start() / stop(); ``url`` once started. Owns the publisher and the metrics."""

    def __init__(
        self,
        controller: Controller,
        config: DashboardConfig,
        tls: TlsConfig | None = None,
        tick: float | None = None,
    ) -> None:
        self.config = config
        self.tls = tls if not config.local else None  # TLS only where a token travels beyond this host
        self.state = ClusterState(controller)
        self.metrics = Metrics(self.state)
        self.publisher = (
            Publisher(self.state, self.metrics) if tick is None else Publisher(self.state, self.metrics, tick)
        )
        self.state.on_tasks_committed(self.metrics.committed)
        self.port = 0
        self._web: WebServer | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    # ---- hooks for the session manager ------------------------------------------------------

    def scheduled(self, decision: Decision, seconds: float) -> None:
        self.state.scheduled(decision)
        self.metrics.scheduled(decision.actions, seconds)

    def storage_committed(self, records: int, seconds: float) -> None:
        self.metrics.storage_committed(records, seconds)

    def grpc_interceptor(self) -> CallCounter:
        """Counts the gRPC server's calls by method and code (give it to grpc.aio.server)."""
        return CallCounter(self.metrics.grpc_calls)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the pages and /metrics (OSError if the port is taken); the import runs off the loop."""
        server = await asyncio.to_thread(importlib.import_module, "flame.dashboard._server")
        web = server.WebServer(self)
        await web.start()
        self._web = web

    async def stop(self) -> None:
        web, self._web = self._web, None
        if web is not None:
            await web.stop()
