"""SQLite engine: the embedded default, one file, WAL journal, group commit.

Durability choice: WAL with ``synchronous=NORMAL``. A commit then appends the transaction to the
WAL file with write(2) before returning, so the data sits in the OS page cache and survives a crash
or SIGKILL of the session manager process; only a power loss or kernel crash can drop the last
commits (fsync happens at checkpoints). ``FULL`` would fsync on every commit for protection the
session manager does not promise (it promises to survive its own process dying), and group commit
already amortises whatever a commit costs.

Two connections: the writer's, opened, used and closed in the writer thread only, and a read-only
one in the reader thread (sqlite3's default same-thread check enforces both), so neither needs a
lock. WAL lets the reader read committed data while the writer commits.

Schema versions: 1 had a task's events in one JSON column; 2 adds ``appended_events`` for the
narrow UpdateTask. Opening a version-1 file upgrades it in place (one ALTER TABLE, no rewrite).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path

from flame.errors import Internal, InvalidArgument, InvalidState
from flame.session_manager.storage import _codec as codec
from flame.session_manager.storage._records import Batch, StoredState, apply_counts
from flame.session_manager.storage._sql import Queries, Rows, SqlStorage, upsert
from flame.types import Task

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS applications (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state INTEGER NOT NULL,
        creation_time INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        application TEXT NOT NULL,
        spec TEXT NOT NULL,
        common_data BLOB,
        state INTEGER NOT NULL,
        creation_time INTEGER NOT NULL,
        completion_time INTEGER,
        pending INTEGER NOT NULL,
        running INTEGER NOT NULL,
        succeed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        cancelled INTEGER NOT NULL,
        events TEXT NOT NULL,
        next_task_id INTEGER NOT NULL
    )""",
    # No foreign key to sessions: the session manager owns consistency, DeleteSession removes the
    # tasks explicitly, and a key check per inserted task would only slow the hot path.
    """CREATE TABLE IF NOT EXISTS tasks (
        session_id TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER,
        input BLOB,
        output BLOB,
        state INTEGER NOT NULL,
        creation_time INTEGER NOT NULL,
        completion_time INTEGER,
        events TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        appended_events TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (session_id, id)
    )""",
)

#: From each version to the next.
_UPGRADES = {1: ("ALTER TABLE tasks ADD COLUMN appended_events TEXT NOT NULL DEFAULT ''",)}

_Q = Queries("?")
_PUT_APPLICATION = upsert("applications", codec.APPLICATION_COLUMNS, ("name",), "?")
_PUT_SESSION = upsert("sessions", codec.SESSION_COLUMNS, ("id",), "?")
_PUT_TASK = upsert("tasks", codec.TASK_COLUMNS, ("session_id", "id"), "?")
_NO_LIMIT = -1


class SqliteStorage(SqlStorage):
    """Storage in one SQLite file at ``path`` (its parent directories are created)."""

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None

    def _prepare(self, batch: Batch) -> Callable[[], None]:
        return partial(self._commit_rows, Rows.of(batch))

    # -- everything below runs in the writer thread ----------------------------------------------

    def _open(self) -> None:
        self._conn = self._connect()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidState(f"storage {self.url} is not open")
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"cannot create the directory for the storage database {self.path}: {exc}") from exc
        try:
            # isolation_level=None: no implicit transactions; _commit_rows issues BEGIN/COMMIT itself.
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise InvalidArgument(f"cannot open the storage database {self.path}: {exc}") from exc
        try:
            self._prepare_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:  # e.g. "file is not a database"
            raise InvalidArgument(f"cannot use {self.path} as the storage database: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise InvalidArgument(
                f"the storage database {self.path} has schema version {version}, newer than version "
                f"{SCHEMA_VERSION} which this Flame understands: it was written by a newer Flame; "
                "upgrade Flame or point the storage url at another file"
            )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            if version < SCHEMA_VERSION:
                self._upgrade(conn, version)
        except sqlite3.Error as exc:
            raise InvalidArgument(f"cannot prepare the storage database {self.path}: {exc}") from exc
        if str(mode).lower() != "wal":
            raise Internal(f"the storage database {self.path} refused WAL mode (journal_mode is {mode})")
        logger.info("storage database %s opened (schema version %d)", self.path, SCHEMA_VERSION)

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Create the schema (version 0: a new file) or upgrade it, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            else:
                for step in range(version, SCHEMA_VERSION):
                    for statement in _UPGRADES[step]:
                        conn.execute(statement)
                logger.info("storage database %s upgraded from schema version %d", self.path, version)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _commit_rows(self, rows: Rows) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if rows.deleted_sessions:
                deleted = [(session_id,) for session_id in rows.deleted_sessions]
                conn.executemany("DELETE FROM tasks WHERE session_id = ?", deleted)
                conn.executemany("DELETE FROM sessions WHERE id = ?", deleted)
            if rows.deleted_applications:
                conn.executemany(
                    "DELETE FROM applications WHERE name = ?", [(name,) for name in rows.deleted_applications]
                )
            if rows.applications:
                conn.executemany(_PUT_APPLICATION, rows.applications)
            if rows.sessions:
                conn.executemany(_PUT_SESSION, rows.sessions)
            if rows.tasks:
                conn.executemany(_PUT_TASK, rows.tasks)
            if rows.updates:
                conn.executemany(_Q.update_task, rows.updates)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("storage %s: rollback failed", self.url)
            raise

    # -- the reader thread -----------------------------------------------------------------------

    def _open_reader(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise InvalidArgument(f"cannot open the storage database {self.path} for reading: {exc}") from exc
        self._reader_conn = conn

    def _close_reader(self) -> None:
        conn, self._reader_conn = self._reader_conn, None
        if conn is not None:
            conn.close()

    def _reader_connection(self) -> sqlite3.Connection:
        if self._reader_conn is None:
            raise InvalidState(f"storage {self.url} is not open")
        return self._reader_conn

    def _read_state(self, closed_tasks: bool, finished_tasks: bool) -> StoredState:
        conn = self._reader_connection()
        conn.execute("BEGIN")  # one read transaction: the tables come from the same snapshot
        try:
            sessions = [codec.session_from_row(row) for row in conn.execute(_Q.select_sessions)]
            apply_counts(sessions, conn.execute(_Q.count_tasks))
            query = _Q.select_loaded(closed_tasks, finished_tasks)
            return StoredState(
                applications=[codec.application_from_row(row) for row in conn.execute(_Q.select_applications)],
                sessions=sessions,
                tasks=[codec.task_from_row(row) for row in conn.execute(query)],
            )
        finally:
            conn.execute("ROLLBACK")

    def _read_task(self, session_id: str, task_id: str) -> Task | None:
        row = self._reader_connection().execute(_Q.select_task, (session_id, task_id)).fetchone()
        return None if row is None else codec.task_from_row(row)

    def _read_tasks(
        self, session_id: str, offset: int, limit: int | None, states: tuple[int, ...] | None
    ) -> list[Task]:
        states = states or ()
        params = (session_id, *states, _NO_LIMIT if limit is None else limit, offset)
        rows = self._reader_connection().execute(_Q.select_page(len(states)), params)
        return [codec.task_from_row(row) for row in rows]
