"""An unmodified flamepy 0.6.0 client and service against our cluster."""

from __future__ import annotations

from concurrent.futures import wait
from pathlib import Path

import flamepy
import pytest

from flame.testing import LocalCluster
from tests.integration.conftest import write_service

FLAMEPY_SERVICE = """
    import flamepy

    class Echo(flamepy.FlameService):
        def on_session_enter(self, context):
            self.prefix = context.common_data()

        def on_task_invoke(self, context):
            if context.input == b"boom":
                raise ValueError("boom was asked for")
            return self.prefix + b":" + context.input

        def on_session_leave(self):
            pass

    flamepy.run(Echo())
"""


@pytest.fixture(scope="module")
def conn(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> flamepy.Connection:
    connection = flamepy.connect(cluster.endpoint)
    attrs = write_service(tmp_path_factory.mktemp("svc"), "echo_service", FLAMEPY_SERVICE)
    connection.register_application("fp-echo", attrs)
    return connection


def test_flamepy_client_and_service_run_100_tasks(conn: flamepy.Connection) -> None:
    app = conn.get_application("fp-echo")
    assert app is not None and app.command is not None
    session = conn.create_session(flamepy.SessionAttributes(application="fp-echo", common_data=b"ctx"))
    futures = {i: session.run(f"t{i}".encode()) for i in range(100)}
    _done, not_done = wait(futures.values(), timeout=120)
    assert not not_done
    for i, future in futures.items():
        assert future.result() == f"ctx:t{i}".encode()

    info = conn.get_session(session.id)
    assert (info.pending, info.running, info.succeed, info.failed) == (0, 0, 100, 0)
    task = session.get_task("7")
    assert task.state == flamepy.TaskState.SUCCEED and task.output == b"ctx:t6"
    codes = [e.code for e in task.events]
    assert codes[0] == flamepy.TaskState.PENDING and codes[-1] == flamepy.TaskState.SUCCEED
    assert flamepy.TaskState.RUNNING in codes
    assert len(list(session.list_tasks())) == 100

    closed = conn.close_session(session.id)
    assert closed.state == flamepy.SessionState.CLOSED and closed.completion_time is not None


def test_task_that_raises_fails_with_its_message_and_session_goes_on(conn: flamepy.Connection) -> None:
    session = conn.create_session(flamepy.SessionAttributes(application="fp-echo", common_data=b"x"))
    good, bad, after = session.run(b"a"), session.run(b"boom"), session.run(b"b")
    assert good.result(60) == b"x:a"
    with pytest.raises(flamepy.FlameError, match="boom was asked for"):
        bad.result(60)
    assert after.result(60) == b"x:b"
    failed = session.get_task("2")
    assert failed.state == flamepy.TaskState.FAILED
    assert failed.events[-1].code == flamepy.TaskState.FAILED
    assert "boom was asked for" in (failed.events[-1].message or "")
    assert session.invoke(b"c") == b"x:c"  # still usable
    info = conn.get_session(session.id)
    assert (info.succeed, info.failed) == (3, 1)
    conn.close_session(session.id)


def test_service_that_cannot_start_gives_event_1001(conn: flamepy.Connection, tmp_path: Path) -> None:
    conn.register_application(
        "fp-broken", {"command": str(tmp_path / "no-such-program"), "working_directory": str(tmp_path)}
    )
    session = conn.create_session(flamepy.SessionAttributes(application="fp-broken"))
    future = session.run(b"x")
    with pytest.raises(flamepy.FlameError):
        future.result(60)  # fails instead of hanging once binding gives up
    events = conn.get_session(session.id).events
    bind_failures = [e for e in events if e.code == 1001]
    assert bind_failures, events
    assert "no-such-program" in (bind_failures[0].message or "")
    assert any(e.code == 1002 for e in events)
    conn.close_session(session.id)
    conn.unregister_application("fp-broken")


def test_errors_use_flame_status_codes(conn: flamepy.Connection) -> None:
    with pytest.raises(flamepy.FlameError) as info:
        conn.open_session("no-such-session")
    assert info.value.code == flamepy.FlameErrorCode.NOT_FOUND
    session = conn.create_session(flamepy.SessionAttributes(application="fp-echo", common_data=b"a"))
    with pytest.raises(flamepy.FlameError) as info:
        conn.open_session(session.id, flamepy.SessionAttributes(application="fp-echo", common_data=b"b"))
    assert info.value.code == flamepy.FlameErrorCode.INVALID_ARGUMENT
    assert "common_data" in info.value.message
    conn.close_session(session.id)
    with pytest.raises(flamepy.FlameError) as info:
        conn.open_session(session.id)
    assert info.value.code == flamepy.FlameErrorCode.INVALID_STATE
    assert conn.get_application("no-such-app") is None
