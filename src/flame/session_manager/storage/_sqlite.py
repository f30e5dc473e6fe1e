"""SQLite engine: the embedded default, one file, WAL journal, group commit.

Durability choice: WAL with ``synchronous=NORMAL``. A commit then appends the transaction to the
WAL file with write(2) before returning, so the data sits in the OS page cache and survives a crash
or SIGKILL of the session manager process; only a power loss or kernel crash can drop the last
commits (fsync happens at checkpoints). ``FULL`` would fsync on every commit for protection the
session manager does not promise (it promises to survive its own process dying), and group commit
already amortises whatever a commit costs.

The connection is opened with ``check_same_thread=False`` because commits run in worker threads,
and every use goes through ``_lock`` so two threads never touch it at once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from flame.errors import Internal, InvalidArgument, InvalidState
from flame.session_manager.storage import _codec as codec
from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._records import Batch, StoredState

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SCHEMA_VERSION = 1

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
        PRIMARY KEY (session_id, id)
    )""",
)


def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_PUT_APPLICATION = _upsert("applications", codec.APPLICATION_COLUMNS, ("name",))
_PUT_SESSION = _upsert("sessions", codec.SESSION_COLUMNS, ("id",))
_PUT_TASK = _upsert("tasks", codec.TASK_COLUMNS, ("session_id", "id"))
_SELECT_APPLICATIONS = f"SELECT {', '.join(codec.APPLICATION_COLUMNS)} FROM applications ORDER BY name"
_SELECT_SESSIONS = f"SELECT {', '.join(codec.SESSION_COLUMNS)} FROM sessions ORDER BY creation_time, id"
# Same order as _records.task_order: numeric ids first, in number order.
_SELECT_TASKS = f"SELECT {', '.join(codec.TASK_COLUMNS)} FROM tasks ORDER BY session_id, seq IS NULL, seq, id"


@dataclass
class _Rows:
    """A batch already serialized on the event loop, ready for the worker thread."""

    deleted_sessions: list[tuple[str]]
    deleted_applications: list[tuple[str]]
    applications: list[codec.Row]
    sessions: list[codec.Row]
    tasks: list[codec.Row]


class SqliteStorage(Storage):
    """Storage in one SQLite file at ``path`` (its parent directories are created)."""

    _commit_in_thread = True

    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def _open(self) -> None:
        self._conn = await asyncio.to_thread(self._connect)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(self._locked, conn.close)

    async def _load(self) -> StoredState:
        return await asyncio.to_thread(self._locked, self._read_all)

    def _prepare(self, batch: Batch) -> Callable[[], None]:
        rows = _Rows(
            deleted_sessions=[(session_id,) for session_id in batch.deleted_sessions],
            deleted_applications=[(name,) for name in batch.deleted_applications],
            applications=[codec.application_row(app) for app in batch.applications],
            sessions=[codec.session_row(session) for session in batch.sessions],
            tasks=[codec.task_row(task) for task in batch.tasks],
        )
        return partial(self._locked, partial(self._commit_rows, rows))

    # -- everything below runs in a worker thread ------------------------------------------------

    def _locked(self, func: Callable[[], _T]) -> _T:
        with self._lock:
            return func()

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
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
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
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise InvalidArgument(f"cannot prepare the storage database {self.path}: {exc}") from exc
        if str(mode).lower() != "wal":
            raise Internal(f"the storage database {self.path} refused WAL mode (journal_mode is {mode})")
        logger.info("storage database %s opened (schema version %d)", self.path, SCHEMA_VERSION)

    def _commit_rows(self, rows: _Rows) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if rows.deleted_sessions:
                conn.executemany("DELETE FROM tasks WHERE session_id = ?", rows.deleted_sessions)
                conn.executemany("DELETE FROM sessions WHERE id = ?", rows.deleted_sessions)
            if rows.deleted_applications:
                conn.executemany("DELETE FROM applications WHERE name = ?", rows.deleted_applications)
            if rows.applications:
                conn.executemany(_PUT_APPLICATION, rows.applications)
            if rows.sessions:
                conn.executemany(_PUT_SESSION, rows.sessions)
            if rows.tasks:
                conn.executemany(_PUT_TASK, rows.tasks)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("storage %s: rollback failed", self.url)
            raise

    def _read_all(self) -> StoredState:
        conn = self._connection()
        conn.execute("BEGIN")  # one read transaction: the three tables come from the same snapshot
        try:
            return StoredState(
                applications=[codec.application_from_row(row) for row in conn.execute(_SELECT_APPLICATIONS)],
                sessions=[codec.session_from_row(row) for row in conn.execute(_SELECT_SESSIONS)],
                tasks=[codec.task_from_row(row) for row in conn.execute(_SELECT_TASKS)],
            )
        finally:
            conn.execute("ROLLBACK")
