"""How Flame's objects look in a terminal: the tables of ``list`` and the details of ``view``.

The columns follow Flame's flmctl, so its users find what they expect.
"""

from __future__ import annotations

from collections.abc import Sequence

from flame.cli._records import decode_output, session_event_label, task_duration_ms, task_event_label
from flame.cli._tables import (
    MISSING,
    format_duration_ms,
    format_events,
    format_memory,
    format_optional,
    format_resreq,
    format_size,
    format_time,
    render_fields,
    render_table,
    state_name,
)
from flame.types import Application, Executor, Node, SessionState, Task
from flame.types import Session as SessionInfo

OUTPUT_PREVIEW = 400  # characters of a task's output shown by `view -s ID -t TASK`

APPLICATION_HEADERS = ("Name", "State", "Shim", "Labels", "Created", "Command")
SESSION_HEADERS = ("ID", "State", "App", "Resources", "Priority", "Pending", "Running", "Succeed", "Failed", "Created")
EXECUTOR_HEADERS = ("ID", "State", "Session", "Node", "Resources")
NODE_HEADERS = ("Name", "State", "CPU", "Memory", "GPU", "Alloc CPU", "Alloc Memory", "Arch", "OS", "Heartbeat")


def sort_sessions(sessions: Sequence[SessionInfo]) -> list[SessionInfo]:
    """Open sessions first, each group oldest first (as Flame lists them)."""
    return sorted(sessions, key=lambda s: (s.state != SessionState.OPEN, s.creation_time, s.id))


def applications_table(apps: Sequence[Application]) -> str:
    rows = [
        (
            app.name,
            state_name(app.state),
            state_name(app.spec.shim),
            ", ".join(app.spec.labels) or MISSING,
            format_time(app.creation_time),
            format_optional(app.spec.command),
        )
        for app in sorted(apps, key=lambda a: a.name)
    ]
    return render_table(APPLICATION_HEADERS, rows)


def sessions_table(sessions: Sequence[SessionInfo]) -> str:
    rows = [
        (
            s.id,
            state_name(s.state),
            s.spec.application,
            format_resreq(s.spec.resreq),
            str(s.spec.priority),
            str(s.pending),
            str(s.running),
            str(s.succeed),
            str(s.failed),
            format_time(s.creation_time),
        )
        for s in sort_sessions(sessions)
    ]
    return render_table(SESSION_HEADERS, rows)


def executors_table(executors: Sequence[Executor]) -> str:
    rows = [
        (e.id, state_name(e.state), e.session_id or MISSING, e.node, format_resreq(e.resreq))
        for e in sorted(executors, key=lambda e: (e.node, e.id))
    ]
    return render_table(EXECUTOR_HEADERS, rows)


def nodes_table(nodes: Sequence[Node]) -> str:
    rows = [
        (
            n.name,
            state_name(n.state),
            str(n.capacity.cpu),
            format_memory(n.capacity.memory),
            str(n.capacity.gpu),
            str(n.allocatable.cpu),
            format_memory(n.allocatable.memory),
            n.info.arch or MISSING,
            n.info.os or MISSING,
            format_time(n.last_heartbeat_time),
        )
        for n in sorted(nodes, key=lambda n: n.name)
    ]
    return render_table(NODE_HEADERS, rows)


def _lines(items: Sequence[str]) -> str:
    return "\n".join(items) if items else MISSING


def application_details(app: Application) -> str:
    spec = app.spec
    schema = spec.schema
    fields = [
        ("Name", app.name),
        ("State", state_name(app.state)),
        ("Description", format_optional(spec.description)),
        ("Shim", state_name(spec.shim)),
        ("Image", format_optional(spec.image)),
        ("URL", format_optional(spec.url)),
        ("Installer", format_optional(spec.installer)),
        ("Labels", _lines(spec.labels)),
        ("Command", format_optional(spec.command)),
        ("Arguments", _lines(spec.arguments)),
        ("Environments", _lines([f"{name}={value}" for name, value in sorted(spec.environments.items())])),
        ("Working Dir", format_optional(spec.working_directory)),
        ("Max Instances", format_optional(spec.max_instances)),
        ("Delay Release", MISSING if spec.delay_release is None else f"{spec.delay_release} s"),
        ("Created", format_time(app.creation_time)),
    ]
    if schema is None:
        fields.append(("Schema", MISSING))
    else:
        parts = (("input", schema.input), ("output", schema.output), ("common data", schema.common_data))
        fields.append(("Schema", "\n".join(f"{name}: {format_optional(value)}" for name, value in parts)))
    return render_fields(fields)


def session_details(info: SessionInfo) -> str:
    spec = info.spec
    tasks = (
        f"{info.pending} pending, {info.running} running, {info.succeed} succeed, "
        f"{info.failed} failed, {info.cancelled} cancelled"
    )
    fields = [
        ("Session", info.id),
        ("Application", spec.application),
        ("State", state_name(info.state)),
        ("Priority", str(spec.priority)),
        ("Resources", format_resreq(spec.resreq)),
        ("Instances", f"min {spec.min_instances}, max {format_optional(spec.max_instances)}"),
        ("Common Data", MISSING if spec.common_data is None else format_size(len(spec.common_data))),
        ("Created", format_time(info.creation_time)),
        ("Completed", format_time(info.completion_time)),
        ("Tasks", tasks),
        ("Events", format_events(info.events, session_event_label)),
    ]
    return render_fields(fields)


def _output_preview(task: Task) -> str:
    text, encoding = decode_output(task.output)
    if text is None:
        return MISSING
    if encoding != "utf-8":
        return f"<{format_size(len(task.output or b''))} of binary data; see -o json for base64>"
    if len(text) > OUTPUT_PREVIEW:
        return f"{text[:OUTPUT_PREVIEW]}... ({len(text) - OUTPUT_PREVIEW} more characters; see -o json)"
    return text


def task_details(task: Task, application: str) -> str:
    fields = [
        ("Task", task.id),
        ("Session", task.session_id),
        ("Application", application),
        ("State", state_name(task.state)),
        ("Created", format_time(task.creation_time)),
        ("Completed", format_time(task.completion_time)),
        ("Duration", format_duration_ms(task_duration_ms(task))),
        ("Input Size", format_size(None if task.input is None else len(task.input))),
        ("Output Size", format_size(None if task.output is None else len(task.output))),
        ("Output", _output_preview(task)),
        ("Events", format_events(task.events, task_event_label)),
    ]
    return render_fields(fields)


def node_details(node: Node) -> str:
    fields = [
        ("Name", node.name),
        ("State", state_name(node.state)),
        ("Capacity", format_resreq(node.capacity)),
        ("Allocatable", format_resreq(node.allocatable)),
        ("Arch", node.info.arch or MISSING),
        ("OS", node.info.os or MISSING),
        ("Addresses", _lines([f"{kind}: {address}" for kind, address in node.addresses])),
        ("Heartbeat", format_time(node.last_heartbeat_time)),
    ]
    return render_fields(fields)
