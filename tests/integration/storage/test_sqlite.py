"""SQLite only: the file, its WAL journal and schema version, the upgrade from version 1, and paths it
cannot use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flame.errors import InvalidArgument
from flame.session_manager.storage import PutTask, SqliteStorage, Storage, StoredState, UpdateTask, open_storage
from flame.types import Event, Task, TaskState
from tests.integration.storage.samples import minimal_task, reload, run


def test_sqlite_file_is_created_with_wal_and_schema_version(tmp_path: Path) -> None:
    store = open_storage("sqlite://nested/dir/flame.db", data_dir=tmp_path)
    assert isinstance(store, SqliteStorage)
    run(_write_one_and_stop(store))
    conn = sqlite3.connect(tmp_path / "nested" / "dir" / "flame.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT session_id, id, seq FROM tasks").fetchall() == [("s0", "1", 1)]
    finally:
        conn.close()


async def _write_one_and_stop(store: Storage) -> None:
    async with store:
        await store.write(PutTask(minimal_task()))


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(InvalidArgument, match=r"schema version 99.*newer") as info:
        run(open_storage(f"sqlite://{path}").start())
    assert str(path) in info.value.message


def test_sqlite_unusable_paths_name_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidArgument, match="cannot create the directory") as info:
        run(open_storage(f"sqlite://{blocker / 'flame.db'}").start())
    assert str(blocker / "flame.db") in info.value.message

    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not an sqlite database, just some bytes" * 100)
    with pytest.raises(InvalidArgument, match="not a database") as info:
        run(open_storage(f"sqlite://{not_a_db}").start())
    assert str(not_a_db) in info.value.message


# The schema as version 1 of this engine wrote it, kept verbatim to test the upgrade from it.
_VERSION_1 = (
    "CREATE TABLE applications (name TEXT PRIMARY KEY, spec TEXT NOT NULL, state INTEGER NOT NULL, "
    "creation_time INTEGER NOT NULL)",
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, application TEXT NOT NULL, spec TEXT NOT NULL, common_data BLOB, "
    "state INTEGER NOT NULL, creation_time INTEGER NOT NULL, completion_time INTEGER, pending INTEGER NOT NULL, "
    "running INTEGER NOT NULL, succeed INTEGER NOT NULL, failed INTEGER NOT NULL, cancelled INTEGER NOT NULL, "
    "events TEXT NOT NULL, next_task_id INTEGER NOT NULL)",
    "CREATE TABLE tasks (session_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, input BLOB, output BLOB, "
    "state INTEGER NOT NULL, creation_time INTEGER NOT NULL, completion_time INTEGER, events TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, PRIMARY KEY (session_id, id))",
)
V1_SESSION = (
    "s",
    "app",
    '{"min_instances":0,"max_instances":null,"batch_size":1,"priority":0,"resreq":null,"weight":1.0}',
    None,
    0,
    1,
    None,
    1,
    1,
    0,
    0,
    0,
    "[]",
    3,
)
V1_TASKS = [
    ("s", "1", 1, b"one", None, 0, 5, None, '[[0,"task created",5]]', 0),
    ("s", "2", 2, b"two", b"2", 1, 6, None, '[[0,"task created",6],[1,"running on e1",7]]', 1),
]


def _write_version_1(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in _VERSION_1:
            conn.execute(statement)
        conn.execute("INSERT INTO applications VALUES ('app', '{}', 0, 1)")
        conn.execute(f"INSERT INTO sessions VALUES ({', '.join('?' * len(V1_SESSION))})", V1_SESSION)
        conn.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", V1_TASKS)
        conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_a_version_1_file_is_upgraded_in_place_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _write_version_1(path)
    url = f"sqlite://{path}"

    async def scenario() -> tuple[StoredState, StoredState]:
        store = open_storage(url)
        await store.start()
        upgraded = await store.load()
        done = Event(2, "succeeded", 8)
        await store.write(UpdateTask("s", "2", TaskState.SUCCEED, 1, b"4", 8, done))
        await store.stop()
        return upgraded, await reload(lambda: open_storage(url))

    upgraded, after = run(scenario())
    assert [a.name for a in upgraded.applications] == ["app"]
    assert [(s.id, s.next_task_id, s.pending, s.running) for s in upgraded.sessions] == [("s", 3, 1, 1)]
    assert upgraded.tasks == [
        Task("s", "1", input=b"one", creation_time=5, events=[Event(0, "task created", 5)]),
        Task(
            "s",
            "2",
            input=b"two",
            output=b"2",
            state=TaskState.RUNNING,
            creation_time=6,
            events=[Event(0, "task created", 6), Event(1, "running on e1", 7)],
            attempts=1,
        ),
    ]
    finished = after.tasks[1]
    assert (finished.state, finished.output, finished.completion_time) == (TaskState.SUCCEED, b"4", 8)
    assert finished.events == [*upgraded.tasks[1].events, Event(2, "succeeded", 8)]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
        assert columns[-1] == "appended_events"
    finally:
        conn.close()
