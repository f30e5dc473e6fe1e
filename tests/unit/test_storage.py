"""Storage without I/O: the public surface, how a batch is reduced, and which urls open which engine.

The engines themselves, against real files and a real PostgreSQL server, are tested in
tests/integration/storage/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import flame.session_manager.storage as storage_pkg
from flame.config import cluster_config_from_dict
from flame.errors import InvalidArgument
from flame.session_manager.storage import (
    DeleteSession,
    MemoryStorage,
    PostgresStorage,
    PutSession,
    PutTask,
    Record,
    SqliteStorage,
    UpdateTask,
    open_storage,
)
from flame.session_manager.storage import _codec as codec
from flame.session_manager.storage._postgres import redact
from flame.session_manager.storage._records import Batch, Entry, TaskUpdate, plan_batch
from flame.types import Event, Task, TaskState
from tests.integration.storage.samples import full_session, full_task, minimal_session, minimal_task


def test_public_api_is_pinned() -> None:
    assert sorted(storage_pkg.__all__) == [
        "DeleteApplication",
        "DeleteSession",
        "MemoryStorage",
        "OnCommit",
        "PostgresStorage",
        "PutApplication",
        "PutSession",
        "PutTask",
        "Record",
        "SqliteStorage",
        "Storage",
        "StoredState",
        "UpdateTask",
        "open_storage",
    ]


def _captured(records: list[Record]) -> list[Entry]:
    """Entries as an engine capturing objects by copy would queue them."""
    entries: list[Entry] = []
    for record in records:
        if isinstance(record, PutTask):
            entries.append((record, replace(record.task, events=list(record.task.events))))
        elif isinstance(record, PutSession):
            entries.append((record, record.session))
        else:
            entries.append((record, None))
    return entries


def _merge(task: Task, update: UpdateTask) -> Task:
    events = task.events if update.event is None else [*task.events, update.event]
    return replace(
        task,
        state=update.state,
        attempts=update.attempts,
        output=update.output,
        completion_time=update.completion_time,
        events=events,
    )


def _update(task_id: str, state: TaskState, event: Event | None, session_id: str = "s") -> UpdateTask:
    return UpdateTask(session_id, task_id, state, 1, state.name.encode(), 9, event)


def test_plan_batch_keeps_one_entry_per_key() -> None:
    first, last = minimal_task("s", "1"), replace(minimal_task("s", "1"), attempts=3)
    records: list[Record] = [
        PutTask(first),
        PutTask(minimal_task("s", "2")),
        PutTask(last),
        PutSession(minimal_session("s")),
        PutSession(full_session("s")),
        PutTask(minimal_task("t", "1")),
        DeleteSession("t"),
        DeleteSession("t"),
    ]
    batch = plan_batch(_captured(records), _merge)
    assert isinstance(batch, Batch)
    assert batch.tasks == [last, minimal_task("s", "2")]
    assert batch.sessions == [full_session("s")]
    assert batch.deleted_sessions == ["t"]
    assert batch.updates == []
    assert batch.records == 8


def test_plan_batch_folds_updates_into_the_put_or_update_before_them() -> None:
    running, done, again = Event(1, "running", 7), Event(2, "done", 8), Event(1, "again", 9)
    created = minimal_task("s", "1")
    records: list[Record] = [
        _update("1", TaskState.RUNNING, running),  # before the put: superseded by it
        PutTask(created),
        _update("1", TaskState.RUNNING, running),
        _update("1", TaskState.SUCCEED, done),
        _update("2", TaskState.RUNNING, running),  # task 2 was stored by an earlier batch
        _update("2", TaskState.RUNNING, None),
        _update("2", TaskState.FAILED, done),
        _update("3", TaskState.RUNNING, again, session_id="gone"),
        DeleteSession("gone"),
        _update("4", TaskState.RUNNING, again, session_id="gone"),  # after the delete: kept, matches nothing
    ]
    batch = plan_batch(_captured(records), _merge)

    assert batch.tasks == [_merge(_merge(created, records[2]), records[3])]  # type: ignore[arg-type]
    assert batch.tasks[0].events == [running, done]
    assert batch.updates == [
        TaskUpdate("s", "2", TaskState.FAILED, 1, b"FAILED", 9, [running, done]),
        records[-1],  # a single update stays as it was written
    ]
    assert batch.deleted_sessions == ["gone"]


def test_a_put_after_updates_supersedes_them() -> None:
    records: list[Record] = [_update("1", TaskState.SUCCEED, Event(2, "done", 8)), PutTask(minimal_task("s", "1"))]
    batch = plan_batch(_captured(records), _merge)
    assert batch.tasks == [minimal_task("s", "1")] and batch.updates == []


def test_update_task_of_takes_the_tasks_fields() -> None:
    task = replace(full_task(), state=TaskState.SUCCEED)
    event = Event(2, "done", 9)
    assert UpdateTask.of(task, event) == UpdateTask(
        "s1", "1", TaskState.SUCCEED, 2, b"out\x00", 1_700_000_000_004, event
    )
    assert UpdateTask.of(task).event is None


def test_event_fragments_round_trip_awkward_messages() -> None:
    events = [Event(1, None, 2), Event(3, 'quote " comma , bracket ] brace }', 4), Event(5, "ünïcode\n\t\\", 6)]
    text = "".join(codec.event_fragment(event) for event in events)
    assert codec.decode_fragments(text) == events
    assert codec.decode_fragments("") == []


def test_event_fragments_of_new_events_are_their_own_where_old_ones_left_their_ids() -> None:
    """Fragments are remembered by identity; an event freed and another made in its place (CPython
    hands the id on) must still be encoded from what it holds."""
    reused = 0
    seen: set[int] = set()
    for n in range(2000):
        event = Event(n % 5, f"message {n}" if n % 3 else None, n)
        reused += id(event) in seen
        seen.add(id(event))
        assert codec.decode_fragments(codec.event_fragment(event)) == [event]
        del event
    assert reused > 0  # the case under test happened
    shared = Event(1, "running on executor x", 7)
    assert codec.event_fragment(shared) == codec.event_fragment(shared) == ',[1,"running on executor x",7]'


def test_open_storage_accepts_the_documented_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_storage("sqlite:///var/lib/flame/flame.db")
    assert isinstance(absolute, SqliteStorage) and absolute.path == Path("/var/lib/flame/flame.db")
    assert absolute.url == "sqlite:///var/lib/flame/flame.db"

    relative = open_storage("sqlite://db/flame.db", data_dir=tmp_path)
    assert isinstance(relative, SqliteStorage) and relative.path == tmp_path / "db" / "flame.db"

    monkeypatch.chdir(tmp_path)
    in_cwd = open_storage("sqlite://flame.db")
    assert isinstance(in_cwd, SqliteStorage) and in_cwd.path == tmp_path / "flame.db"

    for url in ("memory", "none", "NONE", " memory "):
        assert isinstance(open_storage(url), MemoryStorage)

    # Opening (not starting) a postgres engine only parses the url: no server is needed here.
    for url in (
        "postgres://flame:secret@db.example:5433/flame",
        "postgresql://flame:secret@db.example/flame?sslmode=require&options=-csearch_path%3Dprod",
        "POSTGRES://flame@db.example/flame?password=secret",
        "postgresql:///flame",  # the local socket, user and password from the PG* environment
        "postgresql://h1:5432,h2:5433/flame?target_session_attrs=read-write",
    ):
        engine = open_storage(url)
        assert isinstance(engine, PostgresStorage)
        assert "secret" not in engine.url and "secret" not in repr(engine)


def test_postgres_urls_are_shown_without_their_password() -> None:
    assert redact("postgres://flame:s3cr%40t@db:5432/flame") == "postgres://flame:***@db:5432/flame"
    assert redact("postgresql://flame@db/x?password=s&sslmode=require") == (
        "postgresql://flame@db/x?password=***&sslmode=require"
    )
    assert redact("postgresql://flame@db/x?sslmode=require") == "postgresql://flame@db/x?sslmode=require"
    assert redact("postgresql://[::1") == "postgresql://***"  # unparseable: nothing of it is shown


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgres://flame:secret@db:port/flame", "port 'port' is not a number"),
        ("postgresql://flame:secret@db/flame?no_such_option=1", 'invalid URI query parameter: "no_such_option"'),
        ("postgresql://flame:secret@[::1/flame", "IPv6 host address"),
    ],
)
def test_open_storage_rejects_bad_postgres_urls_without_showing_the_password(url: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        open_storage(url)
    message = info.value.message
    assert reason in message and "secret" not in message
    assert "postgres://user:password@host:port/database" in message


def test_cluster_config_accepts_postgres_storage_urls(tmp_path: Path) -> None:
    for url in ("postgres://flame:pw@db:5432/flame", "postgresql://db/flame?sslmode=require", "postgresql://"):
        config = cluster_config_from_dict({"cluster": {"storage": f"  {url} ", "data_dir": str(tmp_path)}})
        assert config.storage == url  # kept as written: libpq reads it
        assert isinstance(open_storage(config.storage, config.data_dir), PostgresStorage)


def test_cluster_config_hides_the_password_of_a_refused_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        cluster_config_from_dict({"cluster": {"storage": "postgress://flame:hunter2@db/flame"}})
    message = info.value.message
    assert "'postgress://flame:***@db/flame'" in message and "hunter2" not in message
    assert "postgres://user:password@host:port/database" in message


@pytest.mark.parametrize(
    "url",
    [
        "",
        "mysql://localhost/flame",
        "postgres:/localhost/flame",
        "sqlite:flame.db",
        "sqlite://",
        "sqlite:///tmp/",
        "sqlite://x.db?mode=rwc",
        "mem",
    ],
)
def test_open_storage_rejects_other_urls_helpfully(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        open_storage(url)
    message = info.value.message
    assert repr(url) in message
    assert "sqlite:///" in message and "postgres://" in message and "memory" in message and "none" in message
