"""A task that runs past its timeout: its service is stopped, it is retried, then Failed with the reason."""

from __future__ import annotations

import json

import pytest

import flame
from flame.testing import LocalCluster


def test_task_past_its_timeout_is_retried_then_failed() -> None:
    cluster = {"executors": {"task_timeout": 0.5, "max_task_attempts": 2}}
    with LocalCluster(executors=1, cluster=cluster) as local, flame.connect(local.endpoint) as conn:
        # an application label overrides the cluster's timeout
        conn.register_application(
            "patient", {**_flmping(conn), "labels": ["task_timeout=5"], "description": "a longer timeout"}
        )
        with conn.create_session("flmping") as session:
            slow = session.run(json.dumps({"duration_ms": 3000}).encode())
            with pytest.raises(flame.TaskFailed, match=r"ran past its timeout of 0.5s") as info:
                slow.result(60)
            assert "after 2 attempt(s)" in info.value.message
            task = session.get_task(info.value.task_id)
            assert [e.code for e in task.events].count(flame.TaskState.RUNNING) == 2
            # the session goes on with a fresh service
            assert json.loads(session.invoke(b""))["duration_ms"] == 0
        with conn.create_session("patient") as session:
            assert json.loads(session.invoke(json.dumps({"duration_ms": 1000}).encode()))["duration_ms"] == 1000
        with pytest.raises(flame.InvalidArgument, match="task_timeout=<seconds>"):
            conn.register_application("bad", {**_flmping(conn), "labels": ["task_timeout=soon"]})


def _flmping(conn: flame.Connection) -> dict[str, object]:
    app = conn.get_application("flmping")
    assert app is not None
    return {"command": app.spec.command, "arguments": app.spec.arguments}
