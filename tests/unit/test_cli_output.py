"""The CLI's plain-text and JSON output: tables, fields, times, sizes, records, the progress bar."""

from __future__ import annotations

import io
import json
from datetime import datetime

from flame.cli._flmping import _results_table, _task_result
from flame.cli._listing import nodes_table, session_details, sessions_table, task_details
from flame.cli._progress import ProgressBar
from flame.cli._records import session_record, task_duration_ms, task_record
from flame.cli._tables import (
    format_duration_ms,
    format_events,
    format_memory,
    format_resreq,
    format_size,
    format_time,
    iso_time,
    render_fields,
    render_table,
    state_name,
)
from flame.types import (
    Event,
    Node,
    NodeState,
    ResourceRequirement,
    Session,
    SessionSpec,
    SessionState,
    Task,
    TaskState,
)

MS = 1_700_000_000_123  # 2023-11-14 22:13:20.123 UTC


def _session(session_id: str, state: SessionState, created: int, **spec: object) -> Session:
    return Session(session_id, SessionSpec("flmping", **spec), state=state, creation_time=created)  # type: ignore[arg-type]


def test_table_columns_are_aligned_under_their_headers() -> None:
    text = render_table(("ID", "State"), [("a-long-id", "Open"), ("b", "Closed")])
    header, first, second = text.split("\n")
    assert header == "ID         State"
    assert first.index("Open") == header.index("State") == second.index("Closed")
    assert not any(line.endswith(" ") for line in text.split("\n"))


def test_fields_align_values_and_indent_continuation_lines() -> None:
    text = render_fields([("Name", "x"), ("Arguments", "-m\nmod")])
    assert text.split("\n") == ["Name:      x", "Arguments: -m", "           mod"]


def test_times_are_local_and_json_times_are_utc() -> None:
    local = datetime.fromtimestamp(MS / 1000).strftime("%Y-%m-%d %H:%M:%S")
    assert format_time(MS) == local
    assert format_time(MS, millis=True) == f"{local}.123"
    assert format_time(None) == format_time(0) == "-"
    assert iso_time(MS) == "2023-11-14T22:13:20.123Z"
    assert iso_time(None) is None


def test_memory_and_sizes_are_human_readable() -> None:
    assert format_memory(1024**3) == "1g"
    assert format_memory(512 * 1024**2) == "512m"
    assert format_memory(25_276_063_744) == "23.5g"
    assert format_memory(100) == "100"
    assert format_resreq(ResourceRequirement(cpu=1, memory=1024**3)) == "cpu=1,mem=1g"
    assert format_resreq(ResourceRequirement(cpu=2, memory=2 * 1024**3, gpu=1)) == "cpu=2,mem=2g,gpu=1"
    assert format_resreq(None) == "-"
    assert [format_size(n) for n in (0, 118, 1536, 3 * 1024**2)] == ["0 B", "118 B", "1.5 KiB", "3.0 MiB"]


def test_durations_and_state_names() -> None:
    assert [format_duration_ms(v) for v in (12, 1500, 65_000, 7_260_000, None)] == [
        "12 ms",
        "1.50 s",
        "1m 5s",
        "2h 1m",
        "-",
    ]
    assert state_name(NodeState.NOT_READY) == "NotReady"
    assert state_name(TaskState.SUCCEED) == "Succeed"


def test_sessions_table_has_flames_columns_open_sessions_first() -> None:
    sessions = [
        _session("old-closed", SessionState.CLOSED, MS),
        _session("new-open", SessionState.OPEN, MS + 2000, priority=5, resreq=ResourceRequirement(1, 1024**3)),
        _session("old-open", SessionState.OPEN, MS + 1000),
    ]
    lines = sessions_table(sessions).split("\n")
    assert lines[0].split() == [
        "ID",
        "State",
        "App",
        "Resources",
        "Priority",
        "Pending",
        "Running",
        "Succeed",
        "Failed",
        "Created",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["old-open", "new-open", "old-closed"]
    assert "cpu=1,mem=1g" in lines[2] and " 5 " in lines[2]


def test_nodes_table_shows_capacity_human_readable() -> None:
    node = Node("n1", ResourceRequirement(4, 8 * 1024**3), ResourceRequirement(2, 4 * 1024**3))
    header, row = nodes_table([node]).split("\n")
    assert header.split()[:4] == ["Name", "State", "CPU", "Memory"]
    assert row.split()[:7] == ["n1", "Ready", "4", "8g", "0", "2", "4g"]


def test_session_details_list_events_with_their_labels() -> None:
    session = _session("s1", SessionState.OPEN, MS)
    session.events = [Event(1001, "bind failed: boom", MS), Event(1002, "gave up", MS + 1)]
    text = session_details(session)
    assert "1001 (BindFailed)   bind failed: boom" in text
    assert "1002 (BindGivenUp)  gave up" in text
    assert format_events([]) == "<none>"


def _task(state: TaskState, output: bytes | None, events: list[Event]) -> Task:
    return Task("s1", "7", input=b"{}", output=output, state=state, creation_time=MS, events=events)


def test_task_details_and_record_give_duration_output_size_and_events() -> None:
    output = json.dumps({"host": "h", "pid": 42, "executor": "e1"}).encode()
    events = [Event(0, "task created", MS), Event(1, "running on executor e1", MS + 10), Event(2, None, MS + 35)]
    task = _task(TaskState.SUCCEED, output, events)
    task.completion_time = MS + 35
    assert task_duration_ms(task) == 25
    text = task_details(task, "flmping")
    assert "Duration:    25 ms" in text and f"Output Size: {len(output)} B" in text
    assert "1 (Running)  running on executor e1" in text
    record = task_record(task)
    assert record["output"] == output.decode() and record["output_encoding"] == "utf-8"
    assert record["output_size"] == len(output) and len(record["events"]) == 3
    binary = task_record(_task(TaskState.SUCCEED, b"\xff\x00", []))
    assert (binary["output"], binary["output_encoding"]) == ("/wA=", "base64")


def test_records_keep_every_key_when_values_are_missing() -> None:
    record = session_record(_session("s1", SessionState.OPEN, MS))
    assert record["resreq"] is None and record["completion_time"] is None
    assert list(record)[:4] == ["id", "application", "state", "priority"]


def test_flmping_rows_name_where_each_task_ran_and_why_one_failed() -> None:
    ok = _task(TaskState.SUCCEED, json.dumps({"host": "h", "pid": 42, "executor": "e1"}).encode(), [])
    failed = _task(TaskState.FAILED, None, [Event(3, "boom", MS)])
    failed.id = "8"
    results = [_task_result(ok), _task_result(failed)]
    assert results[0]["host"] == "h" and results[0]["pid"] == 42 and results[0]["message"] is None
    assert results[1]["state"] == "Failed" and results[1]["message"] == "boom"
    header, *rows = _results_table(results).split("\n")
    assert header.split() == ["Task", "State", "Host", "PID", "Executor", "Duration", "Message"]
    assert rows[1].split() == ["8", "Failed", "-", "-", "-", "-", "boom"]
    assert "Message" not in _results_table(results[:1])


def test_progress_bar_draws_on_one_line_and_erases_itself() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, 200)
    assert "50/200" in bar.line(50, 0.5) and "25%" in bar.line(50, 0.5) and "100 tasks/s" in bar.line(50, 0.5)
    bar.update(50, 0.5)
    bar.close()
    assert stream.getvalue().startswith("\r[") and stream.getvalue().endswith("\r\x1b[K")
    assert "\n" not in stream.getvalue()
