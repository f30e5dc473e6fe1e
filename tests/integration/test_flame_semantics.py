"""Where Flame's behaviour is the contract: what registration accepts, shims, NOT_FOUND texts."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import flamepy
import pytest

import flame
from flame.testing import LocalCluster
from flame.types import EVENT_SESSION_BIND_FAILED, Shim
from tests.integration.conftest import wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2, cluster={"executors": {"max_bind_failures": 2}}) as local:
        yield local


@pytest.fixture(scope="module")
def conn(cluster: LocalCluster) -> Iterator[flame.Connection]:
    with flame.connect(cluster.endpoint) as connection:
        yield connection


def test_an_application_without_command_registers_and_fails_at_binding(conn: flame.Connection) -> None:
    conn.register_application("no-command", {"working_directory": "/tmp"})
    app = conn.get_application("no-command")
    assert app is not None and not app.spec.command
    session = conn.create_session("no-command")
    session.run(b"x")
    events = wait_for(lambda: [e for e in conn.get_session(session.id).events if e.code == EVENT_SESSION_BIND_FAILED])
    assert "failed to bind" in events[0].message  # type: ignore[index]
    conn.close_session(session.id)


def test_registration_checks_schemas_and_an_absolute_working_directory(conn: flame.Connection) -> None:
    with pytest.raises(flame.InvalidArgument, match="working_directory must be an absolute path, got 'rel/dir'"):
        conn.register_application("rel-wd", {"command": sys.executable, "working_directory": "rel/dir"})
    with pytest.raises(flame.InvalidArgument, match="invalid input schema: not JSON"):
        conn.register_application("bad-schema", {"command": sys.executable, "schema": {"input": "{nope"}})
    with pytest.raises(flame.InvalidArgument, match="invalid output schema: a JSON Schema is an object or a boolean"):
        conn.register_application("bad-schema", {"command": sys.executable, "schema": {"output": "[1]"}})
    conn.register_application("good-schema", {"command": sys.executable, "schema": {"input": '{"type": "string"}'}})
    assert [a.name for a in conn.list_applications() if a.name in ("rel-wd", "bad-schema")] == []


def test_a_wasm_application_is_accepted_and_its_sessions_wait_with_a_reason(
    conn: flame.Connection, cluster: LocalCluster
) -> None:
    conn.register_application("wasm-app", {"command": "/opt/app.wasm", "shim": "wasm"})
    assert conn.get_application("wasm-app").spec.shim == Shim.WASM  # type: ignore[union-attr]
    waiting = conn.create_session("wasm-app")
    waiting.run(b"never")
    # A real barrier: a session of a host application is scheduled and served meanwhile.
    with conn.create_session("flmping") as ping:
        ping.invoke(b"")
    info = conn.get_session(waiting.id)
    assert info.state == flame.SessionState.OPEN and (info.pending, info.running) == (1, 0)
    reasons = [e.message for e in info.events if e.code == EVENT_SESSION_BIND_FAILED]
    assert len(reasons) == 1 and "needs the Wasm shim" in reasons[0] and "offer only Host" in reasons[0]
    held = cluster.run(
        lambda sm: [ex.id for ex in sm.controller.executors.values() if ex.executor.application == "wasm-app"]
    )
    assert held == []
    conn.close_session(waiting.id)


def test_not_found_messages_read_as_flames(conn: flame.Connection, cluster: LocalCluster) -> None:
    with pytest.raises(flame.NotFound, match="session <nope> not found"):
        conn.get_session("nope")
    with pytest.raises(flame.NotFound, match="application <nope> not found"):
        conn.create_session("nope")
    theirs = flamepy.connect(cluster.endpoint)
    with pytest.raises(flamepy.FlameError, match="session <nope> not found"):
        theirs.get_session("nope")
    session = conn.create_session("flmping")
    with pytest.raises(flame.NotFound, match=f"task <99> not found in session <{session.id}>"):
        session.get_task("99")
    conn.close_session(session.id)


def test_out_of_the_box_the_builtins_are_listed(conn: flame.Connection) -> None:
    builtins = {"flmping", "flmexec", "flmrun"}
    listed = {a.name for a in conn.list_applications()} & builtins
    assert listed == builtins
