"""The dashboard as the session manager holds it: state, metrics and hooks, without the web server.

The session manager makes its :class:`Dashboard` before its gRPC server (whose calls the metrics
count) and starts the HTTP side later. ``start()`` binds the port and starts the publisher (the
charts' history and the metrics count from then), but loads aiohttp (:mod:`flame.dashboard._server`)
only when the first connection arrives: the web stack costs about 0.4 s of CPU and 10 MB to import,
which a cluster nobody browses never pays, and which would otherwise compete with its first session.
That first request waits in the listen backlog while the import runs, then is answered as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import logging
import socket
import ssl
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

logger = logging.getLogger(__name__)

COOKIE = "flame_dashboard_token"
_BACKLOG = 128
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
        self.ssl_context: ssl.SSLContext | None = None
        self._sockets: list[socket.socket] = []
        self._loading: asyncio.Task[None] | None = None
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
        """Listen on the port (OSError if it is taken) and publish; the web server loads on the
        first connection."""
        self.ssl_context = self._ssl_context()  # a bad certificate is refused now, not at the first page
        self._sockets = listen(self.config.host, self.config.port)
        self.port = self._sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._first_connection)
        self.publisher.start()
        logger.info("dashboard at %s (metrics at %smetrics)", self.url, self.url)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        if self.certificates is not None and self.tls.ca_file:
            # mtls: a certificate the cluster's CA signed is asked for, not required (a token still works)
            context.load_verify_locations(self.tls.ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    @property
    def serving(self) -> bool:
        """Whether the web server is loaded (it is once a first connection has arrived)."""
        return self._web is not None

    def _first_connection(self) -> None:
        self._stop_watching()
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name="dashboard-web")

    async def _load(self) -> None:
        """Import the web stack off the loop and serve on the listening sockets; on failure close
        them, so browsers are refused rather than left waiting."""
        try:
            server = await asyncio.to_thread(importlib.import_module, "flame.dashboard._server")
            web = server.WebServer(self)
            await web.start(self._sockets)
        except Exception:
            logger.exception("dashboard web server failed to start; its port is closed")
            self._close_sockets()
            return
        self._web = web

    def _stop_watching(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing watches
            loop = asyncio.get_running_loop()
            for sock in self._sockets:
                if sock.fileno() >= 0:
                    loop.remove_reader(sock.fileno())

    def _close_sockets(self) -> None:
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    async def stop(self) -> None:
        self._stop_watching()
        loading, self._loading = self._loading, None
        if loading is not None and not loading.done():
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        web, self._web = self._web, None
        if web is not None:
            await web.stop()  # closes the sockets it serves on
        self._close_sockets()
        await self.publisher.stop()


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host`` (every address it resolves to, as asyncio's create_server
    binds them) on ``port``; port 0 picks one free port for all of them. OSError if one cannot bind."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, address[:2]) for family, _, _, _, address in infos))
    sockets: list[socket.socket] = []
    try:
        for family, (addr, _) in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # its IPv4 twin binds itself
            chosen = sockets[0].getsockname()[1] if len(sockets) > 1 else port
            sock.bind((addr, chosen))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
