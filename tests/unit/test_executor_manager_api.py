"""The executor manager's public surface and its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flame.executor_manager
from flame.errors import InvalidArgument
from flame.executor_manager import AgentSettings
from flame.types import ResourceRequirement


def test_public_api_is_pinned() -> None:
    assert flame.executor_manager.__all__ == ["AgentSettings", "ExecutorManager", "run_executor_manager"]
    for name in flame.executor_manager.__all__:
        assert getattr(flame.executor_manager, name) is not None


def settings(**overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "session_manager": "sm.example:8080",
        "node_name": "node-1",
        "capacity": ResourceRequirement(cpu=2),
        "work_dir": Path("/var/lib/flame"),
        "socket_dir": Path("/run/flame"),
    }
    values.update(overrides)
    return AgentSettings(**values)


def test_defaults_and_derived_paths() -> None:
    value = settings()
    assert value.max_executors == 0
    assert value.log_dir == Path("/var/lib/flame/logs")
    assert value.tls_ca is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("session_manager", "localhost", "expected host:port"),
        ("session_manager", "host:http", "expected host:port"),
        ("node_name", " ", "node name must not be empty"),
        ("max_executors", -1, "max_executors"),
        ("heartbeat_interval_ms", 0, "heartbeat interval must be positive"),
        ("stop_grace", 0, "stop_grace must be a positive number"),
        ("batch_window", -0.1, "batch_window must not be negative"),
        ("tls_cert", Path("/etc/cert.pem"), "tls_cert and tls_key go together"),
    ],
)
def test_invalid_settings_say_what_is_accepted(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        settings(**{field: value})
