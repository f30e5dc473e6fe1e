"""The executor manager's settings: one frozen value, built once by the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flame.errors import InvalidArgument
from flame.types import ResourceRequirement


@dataclass(frozen=True)
class AgentSettings:
    """What one executor manager (the agent of a node) needs to run.

    Times are in seconds unless the name says otherwise.
    """

    #: The session manager's Backend endpoint, ``host:port``.
    session_manager: str
    #: The name this node registers under; unique in the cluster.
    node_name: str
    #: What this node offers to executors.
    capacity: ResourceRequirement
    #: Per-executor working directories and ``logs/`` live here.
    work_dir: Path
    #: Unix sockets of the services; keep it short (a socket path must stay under 100 bytes).
    socket_dir: Path
    #: Executors this node may host at once (0: limited by capacity only).
    max_executors: int = 0
    #: Keep a warm interpreter (grpc and the SDK imported) for each free executor slot, so a service
    #: whose command is this Python starts in milliseconds; needs max_executors.
    warm_services: bool = True
    #: Heartbeat period when nothing else is sent; the session manager may override it on registration.
    heartbeat_interval_ms: int = 3000
    #: How long a service may take to listen on its socket after it was started.
    service_start_timeout: float = 30.0
    #: How long a service has to exit after SIGTERM before its process group gets SIGKILL.
    stop_grace: float = 5.0
    #: How long OnSessionLeave may take before the service is stopped anyway.
    leave_timeout: float = 10.0
    #: While executors have tasks queued, their outcomes go out at most once per window, together. Reports
    #: and the outcomes of executors about to run out of tasks are sent at once.
    batch_window: float = 0.005
    #: Connect with TLS (implied by tls_ca); without tls_ca the system's root certificates are trusted.
    tls: bool = False
    #: PEM file of the CA that signed the session manager's certificate.
    tls_ca: Path | None = None
    #: Client certificate (PEM) and its key, for mutual TLS; both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Extra environment for every service, over this process's own (e.g. FLAME_CACHE_ENDPOINT).
    service_env: tuple[tuple[str, str], ...] = ()
    #: Serve Prometheus metrics on this port (0: any free port); None: no metrics server.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: Globs of the command lines this node runs (flame.config.CommandAllowlist); ``*``: anything.
    allowed_commands: tuple[str, ...] = ("*",)
    #: Bearer token for a session manager with token authentication; ``token_file`` is re-read on SIGHUP.
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None

    def __post_init__(self) -> None:
        host, sep, port = self.session_manager.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidArgument(
                f"invalid session manager endpoint {self.session_manager!r}: expected host:port, e.g. 127.0.0.1:8080"
            )
        if not self.node_name.strip():
            raise InvalidArgument("node name must not be empty")
        if self.max_executors < 0:
            raise InvalidArgument(f"max_executors must be 0 (no limit) or more, got {self.max_executors}")
        if self.heartbeat_interval_ms <= 0:
            raise InvalidArgument(f"heartbeat interval must be positive, got {self.heartbeat_interval_ms} ms")
        for name in ("service_start_timeout", "stop_grace", "leave_timeout"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.batch_window < 0:
            raise InvalidArgument(f"batch_window must not be negative, got {self.batch_window}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("tls_cert and tls_key go together: give both or neither")

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"
