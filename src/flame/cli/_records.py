"""Flame objects as JSON-ready records, the ``-o json`` form of every command.

Each kind has one record function with a fixed set of keys (a missing value is ``null``, never an
absent key), so scripts can rely on them. Times are ISO 8601 strings in UTC, sizes and memory are
bytes, states are Flame's names (``Open``, ``Succeed``, ``NotReady``).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from flame.cli._tables import iso_time, state_name
from flame.types import (
    EVENT_SESSION_BIND_FAILED,
    EVENT_SESSION_BIND_GIVEN_UP,
    Application,
    Event,
    Executor,
    Node,
    ResourceRequirement,
    Task,
    TaskState,
    application_spec_dict,
)
from flame.types import Session as SessionInfo

if TYPE_CHECKING:
    from flame.client import Session

Record = dict[str, Any]

_SESSION_EVENTS = {EVENT_SESSION_BIND_FAILED: "BindFailed", EVENT_SESSION_BIND_GIVEN_UP: "BindGivenUp"}


def session_info(session: Session) -> SessionInfo:
    """The full status snapshot behind a client Session, spec included (priority, resreq, ...).

    TODO(client): use a public accessor once flame.client.Session exposes its spec.
    """
    return session._async._info


def task_event_label(code: int) -> str | None:
    """A task event's code is the task's new state."""
    return state_name(TaskState(code)) if code in TaskState._value2member_map_ else None


def session_event_label(code: int) -> str | None:
    return _SESSION_EVENTS.get(code)


def resreq_record(resreq: ResourceRequirement | None) -> Record | None:
    if resreq is None:
        return None
    return {"cpu": resreq.cpu, "memory": resreq.memory, "gpu": resreq.gpu}


def event_record(event: Event) -> Record:
    return {"code": event.code, "message": event.message, "creation_time": iso_time(event.creation_time)}


def application_record(app: Application) -> Record:
    return {
        "name": app.name,
        "state": state_name(app.state),
        **application_spec_dict(app.spec),
        "shim": state_name(app.spec.shim),
        "creation_time": iso_time(app.creation_time),
    }


def session_record(info: SessionInfo) -> Record:
    spec = info.spec
    return {
        "id": info.id,
        "application": spec.application,
        "state": state_name(info.state),
        "priority": spec.priority,
        "resreq": resreq_record(spec.resreq),
        "min_instances": spec.min_instances,
        "max_instances": spec.max_instances,
        "batch_size": spec.batch_size,
        "common_data_size": None if spec.common_data is None else len(spec.common_data),
        "pending": info.pending,
        "running": info.running,
        "succeed": info.succeed,
        "failed": info.failed,
        "cancelled": info.cancelled,
        "creation_time": iso_time(info.creation_time),
        "completion_time": iso_time(info.completion_time),
        "events": [event_record(e) for e in info.events],
    }


def executor_record(executor: Executor) -> Record:
    return {
        "id": executor.id,
        "state": state_name(executor.state),
        "session_id": executor.session_id,
        "node": executor.node,
        "shim": state_name(executor.shim),
        "resreq": resreq_record(executor.resreq),
    }


def node_record(node: Node) -> Record:
    return {
        "name": node.name,
        "state": state_name(node.state),
        "capacity": resreq_record(node.capacity),
        "allocatable": resreq_record(node.allocatable),
        "arch": node.info.arch,
        "os": node.info.os,
        "addresses": [{"type": kind, "address": address} for kind, address in node.addresses],
        "last_heartbeat_time": iso_time(node.last_heartbeat_time),
    }


def decode_output(data: bytes | None) -> tuple[str | None, str | None]:
    """``(text, encoding)``: UTF-8 text as is, other bytes as base64, no output as ``(None, None)``."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def task_record(task: Task) -> Record:
    output, encoding = decode_output(task.output)
    return {
        "id": task.id,
        "session_id": task.session_id,
        "state": state_name(task.state),
        "creation_time": iso_time(task.creation_time),
        "completion_time": iso_time(task.completion_time),
        "duration_ms": task_duration_ms(task),
        "input_size": None if task.input is None else len(task.input),
        "output_size": None if task.output is None else len(task.output),
        "output": output,
        "output_encoding": encoding,
        "events": [event_record(e) for e in task.events],
    }


def task_duration_ms(task: Task) -> int | None:
    """How long the task ran: from its last Running event to its completion (None if it never ran)."""
    if task.completion_time is None:
        return None
    started = [e.creation_time for e in task.events if e.code == TaskState.RUNNING]
    return max(task.completion_time - started[-1], 0) if started else None
