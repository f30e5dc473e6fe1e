"""``cluster.dashboard``: where the session manager serves its web dashboard and ``/metrics``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flame.config._values import Section
from flame.errors import InvalidArgument

DEFAULT_DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 8280
_KEYS = ("enabled", "host", "port", "token")
_MIN_TOKEN = 16


@dataclass(frozen=True)
class DashboardConfig:
    """``enabled`` None means "not said": ``flame up`` and ``flame session-manager`` turn it on,
    a session manager built in code (tests, :mod:`flame.testing`) leaves it off.

    Bound beyond loopback, the dashboard needs a ``token`` and serves TLS with ``cluster.tls``.
    """

    enabled: bool | None = None
    host: str = DEFAULT_DASHBOARD_HOST
    port: int = DEFAULT_DASHBOARD_PORT
    token: str | None = None
    port_given: bool = False  # the port came from the config (a busy default port is not an error)

    @property
    def local(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_dashboard(cluster: Section, has_tls: bool, cluster_tokens: bool = False) -> DashboardConfig:
    """``cluster_tokens``: the cluster's own credentials open the pages too (cluster.auth.mode
    token, or mtls with cluster.tls.ca_file: its client certificates)."""
    section = cluster.section("dashboard")
    section.check_keys(_KEYS)
    enabled = section.optional_flag("enabled")
    host = section.string("host", DEFAULT_DASHBOARD_HOST)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if any(c in host for c in "/ ") or (":" in host and not _is_ip(host)):
        raise section.error("host", host, "a host name or IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    port = section.integer("port", DEFAULT_DASHBOARD_PORT, 0)
    if port > 65535:
        raise section.error("port", port, "a port from 0 to 65535 (0: any free port)")
    token = section.raw("token")
    if token is not None and (not isinstance(token, str) or len(token.strip()) < _MIN_TOKEN or " " in token.strip()):
        shown = "<hidden>" if isinstance(token, str) else token
        raise section.error("token", shown, f"a string of at least {_MIN_TOKEN} characters without spaces")
    token = token.strip() if isinstance(token, str) else None
    config = DashboardConfig(enabled, host, port, token, port_given=section.has("port"))
    if enabled is not False and not config.local:
        tokens = token is not None or cluster_tokens
        needs = (("cluster.dashboard.token (or cluster.auth.mode token or mtls)", tokens), ("cluster.tls", has_tls))
        missing = [what for what, ok in needs if not ok]
        if missing:
            raise InvalidArgument(
                f"{cluster.source}: {section.key('host')} {host!r} is reachable beyond this machine, so the "
                f"dashboard requires a token and TLS; set {' and '.join(missing)} "
                "(or listen on 127.0.0.1, or set dashboard.enabled: false)"
            )
    return config


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
