"""The executor manager's config: the ``executor_manager`` section (may share flame-cluster.yaml)."""

from __future__ import annotations

import hashlib
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame.config._auth import CommandAllowlist, is_loopback, parse_allowlist, read_token_file
from flame.config._endpoint import DEFAULT_ENDPOINT, Endpoint, parse_endpoint_from
from flame.config._values import ENVIRONMENT, Section, load_yaml, resolve_dir, user_data_dir
from flame.errors import InvalidArgument
from flame.types import ResourceRequirement

_TOP_KEYS = ("executor_manager",)
_TOP_IGNORED = ("cluster", "cache")  # the session manager's and Flame's object cache's sections
_KEYS = (
    "session_manager",
    "node_name",
    "capacity",
    "max_executors",
    "warm_services",
    "work_dir",
    "heartbeat_interval",
    "service_start_timeout",
    "stop_grace",
    "tls",
    "metrics_port",
    "allowed_commands",
    "token",
    "token_file",
)

# Linux's sun_path holds 108 bytes with the terminating NUL (macOS: 104). A socket path longer than
# that cannot be bound at all, so keep ours at most 100 bytes.
MAX_SOCKET_PATH = 100
_SOCKET_NAME_LENGTH = len("0" * 32 + ".sock")


@dataclass(frozen=True)
class ExecutorManagerConfig:
    """One node's executor manager. Intervals in milliseconds, timeouts in seconds."""

    session_manager: Endpoint
    node_name: str
    capacity: ResourceRequirement
    max_executors: int
    work_dir: Path
    heartbeat_interval_ms: int
    service_start_timeout: float
    stop_grace: float
    # CA certificate that signed the session manager's certificate (https:// session_manager only;
    # without it the system's root certificates are trusted).
    ca_file: Path | None = None
    # A client certificate and its key, for a session manager that asks executor managers
    # for one (mutual TLS: cluster.tls.ca_file set on the session manager).
    cert_file: Path | None = None
    key_file: Path | None = None
    # Serve Prometheus metrics on 127.0.0.1:<port> (0: any free port); None: no metrics.
    metrics_port: int | None = None
    # Commands this node agrees to run, whatever the session manager sends (see CommandAllowlist).
    allowed_commands: CommandAllowlist = field(default_factory=CommandAllowlist)
    # The bearer token sent to a session manager with token authentication: given inline
    # (token, FLAME_TOKEN) or read from token_file (FLAME_TOKEN_FILE), which SIGHUP re-reads.
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    # A warm interpreter (grpc and the SDK imported) per free executor slot, for services whose
    # command is this Python (see flame.executor_manager.shims._warm).
    warm_services: bool = True

    @property
    def socket_dir(self) -> Path:
        """Where the services' Unix sockets go: see :func:`socket_dir`."""
        return socket_dir(self.work_dir)


def socket_dir(work_dir: str | Path) -> Path:
    """The directory for executors' Unix sockets (named ``<32 chars>.sock``) under ``work_dir``.

    A Unix socket path must fit in ``sun_path`` (108 bytes on Linux, 104 on macOS), or bind()
    fails. ``work_dir/s`` is used when a socket path in it stays within 100 bytes; for a deeper
    work_dir (long home directories, pytest's tmp_path) it is a short directory under /tmp named
    after the user and a hash of work_dir, so two executor managers never share one. /tmp is used
    literally because ``$TMPDIR`` can itself be long (macOS). The caller creates the directory
    (mode 0700) and, for the /tmp one, checks that it owns it.
    """
    work_dir = Path(work_dir).absolute()
    preferred = work_dir / "s"
    if len(os.fsencode(preferred)) + 1 + _SOCKET_NAME_LENGTH <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(work_dir)).hexdigest()[:12]
    return Path("/tmp") / f"flame-{os.getuid()}-{digest}"  # a short fixed path: see the docstring


def load_executor_manager_config(
    path: str | Path | None, env: Mapping[str, str] | None = None
) -> ExecutorManagerConfig:
    """Load the ``executor_manager`` section of ``path`` (None: defaults), then env overrides.

    ``env`` defaults to ``os.environ``; FLAME_SESSION_MANAGER, FLAME_WORK_DIR, FLAME_TOKEN and
    FLAME_TOKEN_FILE override the file.
    """
    env = os.environ if env is None else env
    if path is None:
        return _build({}, "<defaults>", env, base_dir=None)
    path = Path(path)
    return _build(load_yaml(path), str(path), env, base_dir=path.parent.absolute())


def executor_manager_config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ExecutorManagerConfig:
    """Build a config from a mapping shaped like the file (``{"executor_manager": {...}}``)."""
    return _build(data, source, {}, base_dir=None)


def _build(data: object, source: str, env: Mapping[str, str], base_dir: Path | None) -> ExecutorManagerConfig:
    root = Section.root(data, source)
    root.check_keys(_TOP_KEYS, _TOP_IGNORED)
    section = root.section("executor_manager")
    section.check_keys(_KEYS)
    capacity = _capacity(section)
    session_manager = _session_manager(section, env)
    return ExecutorManagerConfig(
        session_manager=session_manager,
        node_name=section.string("node_name", "") or socket.gethostname(),
        capacity=capacity,
        max_executors=section.integer("max_executors", max(capacity.cpu, 1), 1),
        warm_services=section.optional_flag("warm_services") is not False,  # default: on
        work_dir=_work_dir(section, env, base_dir),
        heartbeat_interval_ms=section.integer("heartbeat_interval", 1000, 1, " of milliseconds"),
        service_start_timeout=section.number("service_start_timeout", 30.0, 0, inclusive=False, unit="seconds"),
        stop_grace=section.number("stop_grace", 5.0, 0, inclusive=True, unit="seconds"),
        ca_file=_ca_file(section, env, session_manager, base_dir),
        cert_file=_tls_path(section, "cert_file", env.get("FLAME_CERT_FILE"), base_dir),
        key_file=_tls_path(section, "key_file", env.get("FLAME_KEY_FILE"), base_dir),
        metrics_port=_metrics_port(section),
        allowed_commands=parse_allowlist(section, is_loopback(session_manager.host)),
        **_token(section, env, base_dir),
    )


def _token(section: Section, env: Mapping[str, str], base_dir: Path | None) -> dict[str, Any]:
    if section.has("token") and section.has("token_file"):
        raise InvalidArgument(f"{section.source}: {section.path} has both token and token_file: keep one")
    if env.get("FLAME_TOKEN"):
        return {"token": env["FLAME_TOKEN"].strip()}
    if env.get("FLAME_TOKEN_FILE"):
        path = Path(env["FLAME_TOKEN_FILE"]).expanduser()
        return {"token": read_token_file(path, ENVIRONMENT, "FLAME_TOKEN_FILE"), "token_file": path}
    if section.has("token"):
        return {"token": section.string("token", "")}
    text = section.optional_string("token_file")
    if text is None:
        return {}
    path = resolve_dir(text, base_dir)
    return {"token": read_token_file(path, section.source, section.key("token_file")), "token_file": path}


def _tls_path(section: Section, name: str, override: str | None, base_dir: Path | None) -> Path | None:
    tls = section.section("tls")
    text = override or tls.optional_string(name)
    if text is None:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _ca_file(section: Section, env: Mapping[str, str], endpoint: Endpoint, base_dir: Path | None) -> Path | None:
    tls = section.section("tls")
    tls.check_keys(("ca_file", "cert_file", "key_file"))
    if tls.has("cert_file") != tls.has("key_file"):
        raise InvalidArgument(
            f"{section.source}: {tls.key('cert_file')} and {tls.key('key_file')} go together: give both or neither"
        )
    if tls.has("cert_file") and not endpoint.tls:
        raise InvalidArgument(
            f"{section.source}: {tls.key('cert_file')} is set but {section.key('session_manager')} "
            f"{str(endpoint)!r} is plaintext: use an https:// endpoint"
        )
    text = env.get("FLAME_CA_FILE") or tls.optional_string("ca_file")
    if text is None:
        return None  # plaintext, or https trusting the system's root certificates
    if not endpoint.tls:
        raise InvalidArgument(
            f"{section.source}: {tls.key('ca_file')} is set but {section.key('session_manager')} "
            f"{str(endpoint)!r} is plaintext: use an https:// endpoint"
        )
    path = Path(text).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _session_manager(section: Section, env: Mapping[str, str]) -> Endpoint:
    if env.get("FLAME_SESSION_MANAGER"):
        source, key, text = ENVIRONMENT, "FLAME_SESSION_MANAGER", env["FLAME_SESSION_MANAGER"]
    else:
        source, key = section.source, section.key("session_manager")
        text = section.raw("session_manager") if section.has("session_manager") else DEFAULT_ENDPOINT
    endpoint = parse_endpoint_from(text, key, source)
    if endpoint.port == 0:
        raise InvalidArgument(f"{source}: invalid {key} {text!r}: port 0 cannot be connected to")
    return endpoint


def _work_dir(section: Section, env: Mapping[str, str], base_dir: Path | None) -> Path:
    if env.get("FLAME_WORK_DIR"):
        return resolve_dir(env["FLAME_WORK_DIR"], None)
    if section.has("work_dir"):
        return resolve_dir(section.string("work_dir", ""), base_dir)
    return user_data_dir(env) / "executors"


def _capacity(section: Section) -> ResourceRequirement:
    if not section.has("capacity"):
        return detect_capacity()
    text = section.raw("capacity")
    expected = "a resource requirement with cpu >= 1 and mem > 0, e.g. cpu=4,mem=8g,gpu=0"
    if not isinstance(text, str):
        raise section.error("capacity", text, expected)
    try:
        capacity = ResourceRequirement.parse(text)
    except InvalidArgument as exc:
        raise section.error("capacity", text, f"{expected} ({exc.message})") from exc
    if capacity.cpu < 1 or capacity.memory < 1:
        raise section.error("capacity", text, expected)
    return capacity


def local_node_slots(executors: int | None) -> int:
    """The executor slots of ``flame up``'s local node: as many as asked, else one per usable cpu."""
    return executors if executors is not None else max(detect_capacity().cpu, 1)


def local_node_work_dir(data_dir: str | Path) -> Path:
    """Where ``flame up``'s local node keeps executor directories, sockets and logs."""
    return Path(data_dir) / "executors"


def detect_capacity() -> ResourceRequirement:
    """This machine's usable cpus and memory, no gpu.

    CPU affinity and the cgroup v2 limits at /sys/fs/cgroup (a container's own) are respected.
    """
    return ResourceRequirement(cpu=_detect_cpus(), memory=_detect_memory(), gpu=0)


def _detect_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _read_cgroup("cpu.max").split()
    if len(quota) == 2 and quota[0].isdigit() and quota[1].isdigit() and int(quota[1]) > 0:
        cpus = min(cpus, math.ceil(int(quota[0]) / int(quota[1])))
    return max(cpus, 1)


def _detect_memory() -> int:
    total = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024  # reported in kB
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            total = 0
    limit = _read_cgroup("memory.max")  # "max" when unlimited
    if limit.isdigit() and int(limit) > 0:
        total = min(total, int(limit)) if total else int(limit)
    return total


def _read_cgroup(name: str) -> str:
    try:
        return Path("/sys/fs/cgroup", name).read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _metrics_port(section: Section) -> int | None:
    port = section.optional_integer("metrics_port", 0)
    if port is not None and port > 65535:
        raise section.error("metrics_port", port, "a port from 0 to 65535 (0: any free port)")
    return port
