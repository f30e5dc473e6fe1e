"""Rows of the SQL engines' tables <-> domain objects.

SQLite and PostgreSQL share these columns, in this order, so both engines encode and decode here.

Specs and events are JSON text with explicit keys (not ``dataclasses.asdict``) so that renaming a
dataclass field cannot silently change the on-disk format; payloads (task input/output, session
common data) stay BLOBs so they are never copied through a text encoding.

A task's events live in two columns: ``events``, the JSON array a PutTask wrote, and
``appended_events``, to which each later UpdateTask appends one ``,[code,message,time]`` fragment
by string concatenation in SQL, so that a state change never reads or re-encodes the earlier events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flame.session_manager.storage._records import TaskUpdate, UpdateTask, task_seq
from flame.types import (
    Application,
    ApplicationSchema,
    ApplicationSpec,
    ApplicationState,
    Event,
    ResourceRequirement,
    Session,
    SessionSpec,
    SessionState,
    Shim,
    Task,
    TaskState,
    application_spec_dict,
)

Row = tuple[object, ...]

APPLICATION_COLUMNS = ("name", "spec", "state", "creation_time")
SESSION_COLUMNS = (
    "id",
    "application",
    "spec",
    "common_data",
    "state",
    "creation_time",
    "completion_time",
    "pending",
    "running",
    "succeed",
    "failed",
    "cancelled",
    "events",
    "next_task_id",
)
TASK_COLUMNS = (
    "session_id",
    "id",
    "seq",
    "input",
    "output",
    "state",
    "creation_time",
    "completion_time",
    "events",
    "attempts",
    "appended_events",
)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode_events(events: list[Event]) -> str:
    if not events:  # the common case for a fresh task; skip the JSON encoder
        return "[]"
    return f"[{''.join(event_fragment(event) for event in events)[1:]}]"


def decode_events(text: str) -> list[Event]:
    if text == "[]":
        return []
    return [Event(code=code, message=message, creation_time=time) for code, message, time in json.loads(text)]


# Event messages repeat ("task created", "running on ..."): their JSON is worth remembering.
_MESSAGE_JSON: dict[str, str] = {}
_MESSAGE_JSON_LIMIT = 4096


def _message_json(message: str) -> str:
    encoded = _MESSAGE_JSON.get(message)
    if encoded is None:
        encoded = json.dumps(message)
        if len(_MESSAGE_JSON) >= _MESSAGE_JSON_LIMIT:
            _MESSAGE_JSON.clear()
        _MESSAGE_JSON[message] = encoded
    return encoded


# Fragments of recently encoded events, by identity. Events are frozen and one serves many tasks
# (the creation of one request, every start of one dispatch, every finish of one message), so
# most events come again and again within a batch. Each entry holds its event, so that no other
# event can be given its id while the entry lasts.
_FRAGMENTS: dict[int, tuple[Event, str]] = {}
_FRAGMENTS_LIMIT = 64


def event_fragment(event: Event) -> str:
    """One event as appended to ``appended_events``: a comma, then the event's JSON array."""
    known = _FRAGMENTS.get(id(event))
    if known is not None:
        return known[1]
    message = "null" if event.message is None else _message_json(event.message)
    fragment = f",[{int(event.code)},{message},{int(event.creation_time)}]"
    if len(_FRAGMENTS) >= _FRAGMENTS_LIMIT:
        _FRAGMENTS.clear()
    _FRAGMENTS[id(event)] = (event, fragment)
    return fragment


def decode_fragments(text: str) -> list[Event]:
    if not text:
        return []
    return [
        Event(code=code, message=message, creation_time=time) for code, message, time in json.loads(f"[{text[1:]}]")
    ]


def application_row(app: Application) -> Row:
    spec_json = application_spec_dict(app.spec)
    return (app.name, _dumps(spec_json), int(app.state), app.creation_time)


def application_from_row(row: Sequence[Any]) -> Application:
    name, spec_text, state, creation_time = row
    spec: dict[str, Any] = json.loads(spec_text)
    schema = spec.get("schema")
    return Application(
        name=name,
        spec=ApplicationSpec(
            shim=Shim(spec.get("shim", Shim.HOST)),
            description=spec.get("description"),
            labels=list(spec.get("labels", [])),
            image=spec.get("image"),
            command=spec.get("command"),
            arguments=list(spec.get("arguments", [])),
            environments=dict(spec.get("environments", {})),
            working_directory=spec.get("working_directory"),
            max_instances=spec.get("max_instances"),
            delay_release=spec.get("delay_release"),
            schema=None if schema is None else ApplicationSchema(**schema),
            url=spec.get("url"),
            installer=spec.get("installer"),
        ),
        state=ApplicationState(state),
        creation_time=creation_time,
    )


def session_row(session: Session) -> Row:
    spec = session.spec
    resreq = spec.resreq
    spec_json = {
        "min_instances": spec.min_instances,
        "max_instances": spec.max_instances,
        "batch_size": spec.batch_size,
        "priority": spec.priority,
        "resreq": None if resreq is None else {"cpu": resreq.cpu, "memory": resreq.memory, "gpu": resreq.gpu},
        "weight": spec.weight,
        "owner": spec.owner,
    }
    return (
        session.id,
        spec.application,
        _dumps(spec_json),
        spec.common_data,
        int(session.state),
        session.creation_time,
        session.completion_time,
        session.pending,
        session.running,
        session.succeed,
        session.failed,
        session.cancelled,
        encode_events(session.events),
        session.next_task_id,
    )


def session_from_row(row: Sequence[Any]) -> Session:
    (sid, application, spec_text, common_data, state, created, completed) = row[:7]
    (pending, running, succeed, failed, cancelled, events, next_task_id) = row[7:]
    spec: dict[str, Any] = json.loads(spec_text)
    resreq = spec.get("resreq")
    return Session(
        id=sid,
        spec=SessionSpec(
            application=application,
            common_data=common_data,
            min_instances=spec.get("min_instances", 0),
            max_instances=spec.get("max_instances"),
            batch_size=spec.get("batch_size", 1),
            priority=spec.get("priority", 0),
            resreq=None if resreq is None else ResourceRequirement(**resreq),
            weight=spec.get("weight", 1.0),
            owner=spec.get("owner"),
        ),
        state=SessionState(state),
        creation_time=created,
        completion_time=completed,
        pending=pending,
        running=running,
        succeed=succeed,
        failed=failed,
        cancelled=cancelled,
        events=decode_events(events),
        next_task_id=next_task_id,
    )


def task_row(task: Task) -> Row:
    return (
        task.session_id,
        task.id,
        task_seq(task.id),
        task.input,
        task.output,
        int(task.state),
        task.creation_time,
        task.completion_time,
        encode_events(task.events),
        task.attempts,
        "",
    )


def updated_task_row(row: Row, update: UpdateTask) -> Row:
    """A task row (as task_row made it) with an update applied, for a put and its updates in one batch."""
    session_id, task_id, seq, input_, _output, _state, created, _completed, events, _attempts, appended = row
    if update.event is not None:
        appended = f"{appended}{event_fragment(update.event)}"
    return (
        session_id,
        task_id,
        seq,
        input_,
        update.output,
        int(update.state),
        created,
        update.completion_time,
        events,
        update.attempts,
        appended,
    )


def update_params(update: UpdateTask | TaskUpdate) -> Row:
    """The parameters of the narrow UPDATE: the new fields, the event fragments, then the key."""
    if isinstance(update, UpdateTask):
        appended = "" if update.event is None else event_fragment(update.event)
    else:
        appended = "".join(event_fragment(event) for event in update.events)
    return (
        int(update.state),
        update.output,
        update.attempts,
        update.completion_time,
        appended,
        update.session_id,
        update.task_id,
    )


def task_from_row(row: Sequence[Any]) -> Task:
    session_id, task_id, _seq, input_, output, state, created, completed, events, attempts, appended = row
    decoded = decode_events(events)
    if appended:
        decoded.extend(decode_fragments(appended))
    return Task(
        session_id=session_id,
        id=task_id,
        input=input_,
        output=output,
        state=TaskState(state),
        creation_time=created,
        completion_time=completed,
        events=decoded,
        attempts=attempts,
    )
