"""The session manager process: storage, controller, scheduler and the gRPC servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

import grpc

from flame.apps import builtin_applications
from flame.config import ClusterConfig, TlsConfig
from flame.errors import AlreadyExists
from flame.protocol import add_servicer, backend_pb2_grpc, ext_pb2, frontend_pb2
from flame.session_manager.auth import Auth, Identity, Role, build_auth
from flame.session_manager.backend import BackendService
from flame.session_manager.controller import Controller, ControllerSettings
from flame.session_manager.frontend import FrontendExtService, FrontendService
from flame.session_manager.providers import Provider, build_provider
from flame.session_manager.scheduler import Scheduler
from flame.session_manager.scheduler.loop import run_scheduler
from flame.session_manager.storage import Storage, open_storage

if TYPE_CHECKING:
    from flame.dashboard import Dashboard

logger = logging.getLogger(__name__)

# Task inputs, outputs and common data travel inside single messages; batches of tasks too.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


def controller_settings(config: ClusterConfig) -> ControllerSettings:
    return ControllerSettings(
        slot=config.slot,
        max_sessions=config.max_sessions,
        max_executors=config.max_executors,
        max_pending_tasks=config.max_pending_tasks,
        max_task_size=config.max_task_size,
        max_common_data_size=config.max_common_data_size,
        max_bind_failures=config.max_bind_failures,
        max_task_attempts=config.max_task_attempts,
        task_timeout=config.task_timeout,
    )


class SessionManager:
    """start() / serve() / shutdown(); also an async context manager."""

    def __init__(self, config: ClusterConfig, settings: ControllerSettings | None = None) -> None:
        self.config = config
        self.storage: Storage = open_storage(config.storage, config.data_dir)
        self.controller = Controller(self.storage, settings or controller_settings(config))
        self.scheduler = Scheduler(config.policies)  # an unknown policy name is refused here
        mutual = config.tls is not None and config.tls.ca_file is not None
        self.backend = BackendService(self.controller, require_client_certificate=mutual)
        self.provider: Provider = build_provider(config, self.controller)
        self.auth: Auth = build_auth(config.auth)  # a bad tokens file is refused here
        self._server: grpc.aio.Server | None = None
        # Awaited after state is recovered and the built-ins are registered, before the ports listen.
        self.before_serving: list[Callable[[], Awaitable[None]]] = []
        self._flamepy_server: grpc.aio.Server | None = None
        self.flamepy_port = 0  # cluster.auth.flamepy_endpoint's port, when set
        self._scheduler: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.port = 0
        self.backend_port = 0  # executor managers' mutual TLS port, when cluster.tls.ca_file is set
        self.dashboard: Dashboard | None = None  # serving once started, when cluster.dashboard.enabled
        self._dashboard_made: Dashboard | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.endpoint.host}:{self.port}"

    async def _register_builtin_applications(self) -> None:
        """cluster.builtin_applications, before a client can call; one already registered is kept as it is."""
        for name, spec in builtin_applications(self.config.builtin_applications).items():
            with contextlib.suppress(AlreadyExists):
                await self.controller.register_application(name, spec)

    async def start(self, *, web: bool = True) -> None:
        """Recover, then listen; with ``web`` False the dashboard's HTTP side waits for start_web()."""
        await self.storage.start()
        await self.controller.recover()
        await self._register_builtin_applications()
        for step in self.before_serving:
            await step()
        dashboard = self._dashboard_made = self._make_dashboard()
        interceptors = [dashboard.grpc_interceptor()] if dashboard is not None else []
        auth = self.config.auth
        if auth.mode == "none" and not self.config.loopback_only:
            logger.warning(
                "cluster.auth.mode is none on %s: anyone who reaches the port may register applications "
                "and run their commands on the nodes (within cluster.applications.allowed_commands)",
                self.config.endpoint,
            )
        server = grpc.aio.server(options=_GRPC_OPTIONS, interceptors=interceptors)
        frontend = FrontendService(self.controller, self.auth.access, self.config.allowed_commands)
        ext = FrontendExtService(self.controller, self.auth.access)
        guard = self.auth.main
        wrap = guard.wrap if guard is not None else None
        add_servicer(server, frontend_pb2.DESCRIPTOR.services_by_name["Frontend"], frontend, wrap)
        add_servicer(server, ext_pb2.DESCRIPTOR.services_by_name["FrontendExt"], ext, wrap)
        backend: object = self.backend
        if guard is not None:
            backend = guard.servicer(backend, "flame.backend.v1.Backend", [("Connect", True)])
        backend_pb2_grpc.add_BackendServicer_to_server(backend, server)
        address = self.config.endpoint.address
        tls = self.config.tls
        if tls is not None:  # mode mtls: every caller of the main port shows a certificate
            credentials = _server_credentials(tls, require_client_auth=auth.mode == "mtls")
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}: is another session manager running there?")
        if tls is not None and tls.ca_file is not None:
            # gRPC asks for client certificates per port, all or nothing: executor managers
            # get a port of their own that requires one, clients keep the main port.
            wanted = tls.backend_port
            if wanted is None:  # next to the clients' port, or any free one when that was too
                wanted = self.port + 1 if self.config.endpoint.port else 0
            backend_address = f"{self.config.endpoint.host}:{wanted}"
            self.backend_port = server.add_secure_port(backend_address, _server_credentials(tls, True))
            if self.backend_port == 0:
                raise OSError(f"cannot listen on {backend_address} (cluster.tls.backend_port) for executor managers")
        if auth.flamepy_endpoint is not None:
            self._flamepy_server = self._flamepy_listener(frontend, ext)
        await server.start()
        self._server = server
        if self._flamepy_server is not None:
            await self._flamepy_server.start()
        await self.provider.start()
        if dashboard is not None:  # its metrics count from the first call, before its pages serve
            self.storage.on_batch_committed.append(dashboard.storage_committed)
        on_cycle = dashboard.scheduled if dashboard is not None else None
        self._scheduler = asyncio.create_task(
            run_scheduler(
                self.controller,
                self.config.schedule_interval_ms,
                self.scheduler,
                self.provider,
                on_cycle,
            ),
            name="scheduler",
        )
        if web:
            await self.start_web()
        logger.info(
            "session manager %s listening on %s (storage %s)", self.config.name, self.endpoint, self.storage.url
        )

    @property
    def dashboard_url(self) -> str | None:
        return None if self.dashboard is None else self.dashboard.url

    def _make_dashboard(self) -> Dashboard | None:
        if not self.config.dashboard.enabled:
            return None
        from flame.dashboard import Dashboard

        return Dashboard(
            self.controller,
            self.config.dashboard,
            self.config.tls,
            tokens=self.auth.tokens,
            certificates=self.auth.certificates,
        )

    async def start_web(self) -> None:
        """Serve the dashboard's pages and /metrics, when enabled (start() does it unless told not to)."""
        if self._dashboard_made is not None and self.dashboard is None:
            await self._start_dashboard(self._dashboard_made)

    async def _start_dashboard(self, dashboard: Dashboard) -> None:
        settings = self.config.dashboard
        try:
            await dashboard.start()
        except OSError as exc:
            where = f"{settings.host}:{settings.port}"
            if settings.port_given:
                raise OSError(f"cannot serve the dashboard on {where} (cluster.dashboard): {exc.strerror}") from exc
            logger.warning("dashboard not started: %s is in use (set cluster.dashboard.port)", where)
            return
        self.dashboard = dashboard

    def _flamepy_listener(self, frontend: FrontendService, ext: FrontendExtService) -> grpc.aio.Server:
        """cluster.auth.flamepy_endpoint: the client services (not the Backend) without credentials,
        every call with cluster.auth.flamepy_role."""
        endpoint = self.config.auth.flamepy_endpoint
        assert endpoint is not None and self.auth.flamepy is not None
        server = grpc.aio.server(options=_GRPC_OPTIONS)
        add_servicer(server, frontend_pb2.DESCRIPTOR.services_by_name["Frontend"], frontend, self.auth.flamepy.wrap)
        add_servicer(server, ext_pb2.DESCRIPTOR.services_by_name["FrontendExt"], ext, self.auth.flamepy.wrap)
        if endpoint.tls:
            assert self.config.tls is not None  # the config refuses https without cluster.tls
            self.flamepy_port = server.add_secure_port(endpoint.address, _server_credentials(self.config.tls, False))
        else:
            self.flamepy_port = server.add_insecure_port(endpoint.address)
        if self.flamepy_port == 0:
            raise OSError(f"cannot listen on {endpoint.address} (cluster.auth.flamepy_endpoint)")
        logger.info(
            "flamepy listener on %s://%s:%d: calls without credentials get role %s",
            endpoint.scheme,
            endpoint.host,
            self.flamepy_port,
            self.config.auth.flamepy_role,
        )
        return server

    def add_node_token(self, token: str, node_name: str) -> None:
        """Accept ``token`` from the executor manager of node ``node_name`` (the all-in-one's own node)."""
        if self.auth.tokens is not None:
            self.auth.tokens.add(token, Identity(node_name, Role.NODE, "local node"))

    def reload_auth(self) -> bool:
        """Re-read the tokens file (on SIGHUP); a revoked token is refused from the next call on."""
        return self.auth.reload()

    async def serve(self) -> None:
        await self._stopped.wait()

    async def shutdown(self, grace: float = 2.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._flamepy_server is not None:
            await self._flamepy_server.stop(grace)
        if self._server is not None:
            await self._server.stop(grace)
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        await self.provider.shutdown()
        if self.dashboard is not None:
            await self.dashboard.stop()
        await self.storage.stop()
        logger.info("session manager stopped")

    async def __aenter__(self) -> SessionManager:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()


def _server_credentials(tls: TlsConfig, require_client_auth: bool) -> grpc.ServerCredentials:
    with open(tls.cert_file, "rb") as f:
        cert = f.read()
    with open(tls.key_file, "rb") as f:
        key = f.read()
    ca = None
    if tls.ca_file:
        with open(tls.ca_file, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=require_client_auth)


async def serve_until_signalled(manager: SessionManager) -> None:
    """Run ``manager`` until SIGINT or SIGTERM; SIGHUP reloads the tokens file (entry points only)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(manager.shutdown()))
    loop.add_signal_handler(signal.SIGHUP, manager.reload_auth)
    async with manager:
        await manager.serve()


def run_session_manager(config: ClusterConfig) -> None:
    asyncio.run(serve_until_signalled(manager=SessionManager(config)))
