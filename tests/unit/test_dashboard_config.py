"""cluster.dashboard: defaults, the rule that beyond loopback needs a token and TLS, bad values."""

from __future__ import annotations

from typing import Any

import pytest

from flame.config import DashboardConfig, cluster_config_from_dict
from flame.errors import InvalidArgument

TLS = {"cert_file": "/etc/flame/server.crt", "key_file": "/etc/flame/server.key"}
TOKEN = "a-token-of-twenty-chars"


def dashboard(section: dict[str, Any], **cluster: Any) -> DashboardConfig:
    return cluster_config_from_dict({"cluster": {"dashboard": section, **cluster}}).dashboard


def refused(section: dict[str, Any], **cluster: Any) -> str:
    with pytest.raises(InvalidArgument) as info:
        dashboard(section, **cluster)
    return str(info.value)


def test_defaults_leave_the_choice_to_the_command_and_listen_on_loopback() -> None:
    config = cluster_config_from_dict({"cluster": {}}).dashboard
    assert config == DashboardConfig(enabled=None, host="127.0.0.1", port=8280, token=None)
    assert config.local and not config.port_given


def test_every_key() -> None:
    config = dashboard(
        {"enabled": True, "host": "0.0.0.0", "port": 9000, "token": TOKEN},
        endpoint="https://h:8080",
        tls=TLS,
        auth={"mode": "none"},
    )
    assert (config.enabled, config.host, config.port, config.token, config.port_given) == (
        True,
        "0.0.0.0",
        9000,
        TOKEN,
        True,
    )
    assert not config.local


def test_beyond_loopback_needs_a_token_and_tls() -> None:
    message = refused({"host": "0.0.0.0"})
    assert "cluster.dashboard.token (or cluster.auth.mode token or mtls) and cluster.tls" in message
    assert "127.0.0.1" in message
    assert "cluster.tls" in refused({"host": "10.0.0.5", "token": TOKEN})
    assert "cluster.dashboard.token" in refused(
        {"host": "::"}, endpoint="https://h:8080", tls=TLS, auth={"mode": "none"}
    )
    assert dashboard({"host": "0.0.0.0", "enabled": False}).enabled is False  # off: nothing to protect
    assert dashboard({"host": "localhost"}).local and dashboard({"host": "::1"}).local


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"enabled": "yes"}, "invalid cluster.dashboard.enabled 'yes': expected true or false"),
        ({"port": 70000}, "a port from 0 to 65535"),
        ({"port": -1}, "a whole number >= 0"),
        ({"host": "a b"}, "a host name or IP address"),
        ({"token": "short"}, "invalid cluster.dashboard.token '<hidden>': expected a string of at least 16 characters"),
        ({"token": 12345678901234567890}, "a string of at least 16 characters"),
        ({"colour": "red"}, "unknown key 'cluster.dashboard.colour'"),
    ],
)
def test_bad_values_are_refused_with_what_is_accepted(section: dict[str, Any], problem: str) -> None:
    assert problem in refused(section)
