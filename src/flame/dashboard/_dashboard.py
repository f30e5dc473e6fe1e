"""The dashboard as the session manager holds it: state, metrics and hooks, without the web server.

The session manager makes its :class:`Dashboard` before its gRPC server (whose calls the metrics
count) and starts the HTTP side later: ``start()`` loads aiohttp (:mod:`flame.dashboard._server`)
only then, so a cluster's ports listen without waiting for the web stack to import.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
from typing import TYPE_CHECKING, Any

from flame.auth import Role
from flame.config import DashboardConfig, TlsConfig
from flame.dashboard._grpc import CallCounter
from flame.dashboard._metrics import Metrics
from flame.dashboard._publisher import Publisher
from flame.dashboard._state import ClusterState
from flame.errors import FlameError

if TYPE_CHECKING:
    from flame.auth import Authenticator
    from flame.dashboard._server import WebServer
    from flame.session_manager.controller import Controller
    from flame.session_manager.scheduler import Decision

COOKIE = "flame_dashboard_token"
PAGE_ROLES = frozenset({Role.ADMIN, Role.USER, Role.VIEWER})  # people; a node's token opens nothing here


class Dashboard:
    """start() / stop(); ``url`` once started. Owns the publisher and the metrics."""

    def __init__(
        self,
        controller: Controller,
        config: DashboardConfig,
        tls: TlsConfig | None = None,
        tick: float | None = None,
        tokens: Authenticator | None = None,
        certificates: Authenticator | None = None,
    ) -> None:
        """``tokens``: the cluster's bearer tokens (cluster.auth.mode token), whose holders of role
        admin, user or viewer may open the pages as well as holders of ``config.token``;
        ``certificates`` (mode mtls): client certificates mapped to identities, checked the same way
        when the pages are served over TLS with the cluster's CA."""
        self.config = config
        self.tls = tls if not config.local else None  # TLS only where a token travels beyond this host
        self.tokens = tokens
        self.certificates = certificates if self.tls is not None and self.tls.ca_file else None
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

    def accepts(self, token: str) -> bool:
        """Whether ``token`` opens the pages: the dashboard's own, or a person's cluster token."""
        if self.config.token is not None and hmac.compare_digest(token.encode(), self.config.token.encode()):
            return True
        if self.tokens is None:
            return False
        try:
            identity = self.tokens.authenticate([("authorization", f"Bearer {token}")])
        except FlameError:
            return False
        return identity.role in PAGE_ROLES

    def accepts_certificate(self, peercert: dict[str, Any] | None) -> bool:
        """Whether the TLS client certificate (as ssl's getpeercert() gives it) opens the pages."""
        if self.certificates is None or not peercert:
            return False
        names = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
        alternatives = [value for kind, value in peercert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
        context = {
            "x509_common_name": [n.encode() for n in names],
            "x509_subject_alternative_name": [n.encode() for n in alternatives],
        }
        try:
            identity = self.certificates.authenticate(None, context)
        except FlameError:
            return False
        return identity.role in PAGE_ROLES

    @property
    def protected(self) -> bool:
        return self.config.token is not None or self.tokens is not None or self.certificates is not None

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
