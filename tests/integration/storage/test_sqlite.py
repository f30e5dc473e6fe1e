"""SQLite only: the file, its WAL journal and schema version, and paths it cannot use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flame.errors import InvalidArgument
from flame.session_manager.storage import PutTask, SqliteStorage, Storage, open_storage
from tests.integration.storage.samples import minimal_task, run


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
