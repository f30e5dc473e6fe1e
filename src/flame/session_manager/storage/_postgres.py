"""PostgreSQL engine: the production store, one server shared by whatever runs the session manager.

Same contract as SQLite: each batch is one transaction, committed in the engine's writer thread
(which alone uses its connection; reads have a second connection in the reader thread), and
``write()`` returns once it is committed.
Durability is the server's: with its default ``synchronous_commit=on``
a commit is in the server's fsync'ed WAL before it is acknowledged, so acknowledged writes survive
the session manager's death and the server's crash alike. Group commit pays that fsync once per batch.

A large batch of tasks goes through a binary COPY into a temporary staging table and one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``: two to three times faster than ``executemany`` from
about a hundred tasks up (10,000: ~130 ms against ~330 ms), while ``executemany`` (pipelined by
psycopg) takes fewer round trips for the few tasks of a quiet moment. The upsert requires at most
one row per key per statement, which ``plan_batch`` guarantees. Narrow task updates take the same
two routes: ``executemany`` of the UPDATE for a few, or a COPY into a second staging table and one
``UPDATE ... FROM`` for many.

Schema versions: 2 adds ``tasks.appended_events`` (see _codec); a version-1 schema is upgraded in
place when opened (one ALTER TABLE, which PostgreSQL does without rewriting the table).

Where the tables live: in the first schema of the connection's ``search_path``, so one database can
hold several clusters (``?options=-csearch_path%3Dflame_prod``). Key columns use the "C" collation so
that rows load in the same order as from the other engines whatever the database's collation.

A connection the server dropped (restart, failover, idle timeout) is replaced before the next batch,
and a batch that failed because the connection broke under it is committed again once on a new
connection. Replaying a batch is safe even if its first COMMIT landed: it is a set of keyed upserts
and deletes, and nothing else is applied in between; a task update appends its events only if the
stored events do not already end with them, so a replayed update does not append them twice.

The driver, psycopg 3, is an optional dependency (``pip install 'flame-python[postgres]'``), imported
when a postgres storage url is opened.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flame.errors import InvalidArgument, InvalidState, Unavailable
from flame.session_manager.storage import _codec as codec
from flame.session_manager.storage._records import Batch, StoredState, apply_counts
from flame.session_manager.storage._sql import Queries, Rows, SqlStorage, upsert
from flame.types import Task

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SCHEMA_VERSION = 2
SCHEMES = ("postgresql", "postgres")
ACCEPTED_FORM = (
    "postgres://user:password@host:port/database or postgresql://... "
    "(libpq's URI form; query parameters such as ?sslmode=require are passed to libpq)"
)

# Used unless the url sets them: fail fast on a dead address, notice a dead peer within about a minute,
# and name the session manager in pg_stat_activity.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "application_name": "flame-session-manager",
}

# Serializes schema creation between session managers starting at once (any constant will do).
_SCHEMA_LOCK = 0x666C616D65  # "flame"

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version INTEGER NOT NULL
)"""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS applications (
        name TEXT COLLATE "C" PRIMARY KEY,
        spec TEXT NOT NULL,
        state INTEGER NOT NULL,
        creation_time BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT COLLATE "C" PRIMARY KEY,
        application TEXT NOT NULL,
        spec TEXT NOT NULL,
        common_data BYTEA,
        state INTEGER NOT NULL,
        creation_time BIGINT NOT NULL,
        completion_time BIGINT,
        pending BIGINT NOT NULL,
        running BIGINT NOT NULL,
        succeed BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        cancelled BIGINT NOT NULL,
        events TEXT NOT NULL,
        next_task_id BIGINT NOT NULL
    )""",
    # No foreign key to sessions, as in SQLite: DeleteSession removes the tasks explicitly.
    """CREATE TABLE IF NOT EXISTS tasks (
        session_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        seq BIGINT,
        input BYTEA,
        output BYTEA,
        state INTEGER NOT NULL,
        creation_time BIGINT NOT NULL,
        completion_time BIGINT,
        events TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        appended_events TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (session_id, id)
    )""",
)
#: From each version to the next.
_UPGRADES = {1: ("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS appended_events TEXT NOT NULL DEFAULT ''",)}
# Binary COPY sends values in the columns' exact types: keep in step with the tasks table above.
_TASK_COPY_TYPES = ("text", "text", "int8", "bytea", "bytea", "int4", "int8", "int8", "text", "int4", "text")
_UPDATE_COPY_TYPES = ("int4", "bytea", "int4", "int8", "text", "text", "text")  # codec.update_params' order
_STAGING = "pg_temp.flame_tasks_in"  # per connection, emptied by every commit
_STAGING_UPDATES = "pg_temp.flame_updates_in"
_COPY_FROM = 32  # rows in a batch from which COPY beats executemany

_Q = Queries("%s")
_PUT_APPLICATION = upsert("applications", codec.APPLICATION_COLUMNS, ("name",), "%s")
_PUT_SESSION = upsert("sessions", codec.SESSION_COLUMNS, ("id",), "%s")
_PUT_TASK = upsert("tasks", codec.TASK_COLUMNS, ("session_id", "id"), "%s")
_PUT_STAGED_TASKS = upsert("tasks", codec.TASK_COLUMNS, ("session_id", "id"), "%s", source=_STAGING)
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE tasks) ON COMMIT DELETE ROWS",
    f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGING_UPDATES} (
        state INTEGER, output BYTEA, attempts INTEGER, completion_time BIGINT, appended TEXT,
        session_id TEXT COLLATE "C", id TEXT COLLATE "C"
    ) ON COMMIT DELETE ROWS""",
)
_COPY_TASKS = f"COPY {_STAGING} ({', '.join(codec.TASK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_UPDATES = f"COPY {_STAGING_UPDATES} FROM STDIN (FORMAT BINARY)"
# Idempotent, for the replay after a broken connection: events already at the end are not appended again.
_UPDATE_TASK = (
    "UPDATE tasks SET state = %s, output = %s, attempts = %s, completion_time = %s, "
    "appended_events = appended_events || %s WHERE session_id = %s AND id = %s "
    "AND (%s::text = '' OR right(appended_events, length(%s::text)) <> %s::text)"
)
_UPDATE_STAGED_TASKS = (
    f"UPDATE tasks SET state = u.state, output = u.output, attempts = u.attempts, "
    f"completion_time = u.completion_time, appended_events = tasks.appended_events || u.appended "
    f"FROM {_STAGING_UPDATES} AS u WHERE tasks.session_id = u.session_id AND tasks.id = u.id "
    f"AND (u.appended = '' OR right(tasks.appended_events, length(u.appended)) <> u.appended)"
)


def is_postgres_url(url: str) -> bool:
    scheme, sep, _ = url.strip().partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def redact(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) replaced by ``***``.

    A url without a password comes back unchanged, character for character.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: keep the scheme only rather than risk showing a password
        return url.partition("://")[0] + "://***"
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    query = parts.query
    params = parse_qsl(query, keep_blank_values=True)
    if any(name == "password" for name, _ in params):
        query = urlencode([(name, "***" if name == "password" else value) for name, value in params], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _driver(url: str) -> ModuleType:
    try:
        return importlib.import_module("psycopg")
    except ImportError as exc:
        raise InvalidArgument(
            f"storage url {url!r} needs the PostgreSQL driver psycopg 3, which is not installed: "
            "pip install 'flame-python[postgres]'"
        ) from exc


def _conninfo(pg: ModuleType, url: str, shown: str) -> str:
    """Check ``url`` with libpq's own parser and return it with Flame's connection defaults added."""
    scheme, _, rest = url.strip().partition("://")
    text = f"{scheme.lower()}://{rest}"  # libpq only knows the lower-case schemes
    try:
        params: dict[str, Any] = pg.conninfo.conninfo_to_dict(text)
    except pg.ProgrammingError as exc:
        reason = str(exc).strip().replace(text, shown)  # libpq quotes the url, password and all
        raise InvalidArgument(f"invalid storage url {shown!r}: {reason}; accepted form: {ACCEPTED_FORM}") from exc
    for port in str(params.get("port", "")).split(","):
        if port and not port.isdigit():
            raise InvalidArgument(
                f"invalid storage url {shown!r}: port {port!r} is not a number; accepted form: {ACCEPTED_FORM}"
            )
    defaults = {name: value for name, value in _CONNECT_DEFAULTS.items() if name not in params}
    return str(pg.conninfo.make_conninfo(text, **defaults))


class PostgresStorage(SqlStorage):
    """Storage in a PostgreSQL database named by a libpq URI; ``url`` is shown without its password."""

    def __init__(self, url: str) -> None:
        shown = redact(url)
        super().__init__(shown)
        self._pg = _driver(shown)
        self._conninfo = _conninfo(self._pg, url, shown)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._reader_conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def _prepare(self, batch: Batch) -> Callable[[], None]:
        return partial(self._commit_rows, Rows.of(batch))

    # -- everything below runs in the writer thread ----------------------------------------------

    def _open(self) -> None:
        self._connect()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _dial(self) -> psycopg.Connection[tuple[Any, ...]]:
        pg = self._pg
        try:
            conn: psycopg.Connection[tuple[Any, ...]] = pg.connect(self._conninfo, autocommit=True)
        except pg.Error as exc:
            raise Unavailable(
                f"cannot connect to the storage database {self.url}: {str(exc).strip()} "
                f"(is the server up, and are the url's host, port, database, user and password right? "
                f"accepted form: {ACCEPTED_FORM})"
            ) from exc
        return conn

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._dial()
        try:
            self._prepare_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The writer's connection, replaced first if the server dropped it.

        A failed reconnection keeps the dead connection in place, so the next batch tries again.
        """
        conn = self._conn
        if conn is None:
            raise InvalidState(f"storage {self.url} is not open")
        if conn.closed:
            logger.warning("storage %s: the connection was lost; reconnecting", self.url)
            return self._connect()
        return conn

    def _prepare_schema(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        pg = self._pg
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_VERSION_TABLE)
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                version = 0 if row is None else int(row[0])
                self._check_version(version)
                if version < SCHEMA_VERSION:
                    self._upgrade(conn, version)
                for statement in _CREATE_STAGING:
                    conn.execute(statement)
                schema = conn.execute("SELECT current_schema()").fetchone()
        except pg.OperationalError as exc:
            raise Unavailable(f"lost the storage database {self.url} while preparing it: {exc}") from exc
        except pg.Error as exc:  # e.g. no CREATE privilege, or no schema of the search_path exists
            raise InvalidArgument(f"cannot prepare the storage database {self.url}: {str(exc).strip()}") from exc
        logger.info(
            "storage database %s opened (schema %s, version %d)", self.url, schema[0] if schema else "?", SCHEMA_VERSION
        )

    def _upgrade(self, conn: psycopg.Connection[tuple[Any, ...]], version: int) -> None:
        """Create the schema (version 0) or upgrade it; inside _prepare_schema's transaction."""
        if version == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
        else:
            for step in range(version, SCHEMA_VERSION):
                for statement in _UPGRADES[step]:
                    conn.execute(statement)
            logger.info("storage database %s upgraded from schema version %d", self.url, version)
        conn.execute(
            "INSERT INTO schema_version (version) VALUES (%s) "
            "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
            (SCHEMA_VERSION,),
        )

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InvalidArgument(
                f"the storage database {self.url} has schema version {version}, newer than version "
                f"{SCHEMA_VERSION} which this Flame understands: it was written by a newer Flame; "
                "upgrade Flame or point the storage url at another database or schema"
            )

    def _commit_rows(self, rows: Rows) -> None:
        conn = self._connection()
        try:
            self._apply(conn, rows)
        except self._pg.OperationalError:
            if not conn.broken:
                raise
            # Nothing of a failed transaction is applied, and a replay of one that did commit is harmless.
            logger.warning("storage %s: the connection broke during a commit; committing again", self.url)
            self._apply(self._connection(), rows)

    @staticmethod
    def _apply(conn: psycopg.Connection[tuple[Any, ...]], rows: Rows) -> None:
        with conn.transaction(), conn.cursor() as cur:
            if rows.deleted_sessions:
                cur.execute("DELETE FROM tasks WHERE session_id = ANY(%s)", (rows.deleted_sessions,))
                cur.execute("DELETE FROM sessions WHERE id = ANY(%s)", (rows.deleted_sessions,))
            if rows.deleted_applications:
                cur.execute("DELETE FROM applications WHERE name = ANY(%s)", (rows.deleted_applications,))
            if rows.applications:
                cur.executemany(_PUT_APPLICATION, rows.applications)
            if rows.sessions:
                cur.executemany(_PUT_SESSION, rows.sessions)
            if 0 < len(rows.tasks) < _COPY_FROM:
                cur.executemany(_PUT_TASK, rows.tasks)
            elif rows.tasks:
                _copy(cur, _COPY_TASKS, _TASK_COPY_TYPES, rows.tasks)
                cur.execute(_PUT_STAGED_TASKS)
            if 0 < len(rows.updates) < _COPY_FROM:
                # row[4] is the appended events (codec.update_params), which the guard repeats three times.
                cur.executemany(_UPDATE_TASK, [(*row, row[4], row[4], row[4]) for row in rows.updates])
            elif rows.updates:
                _copy(cur, _COPY_UPDATES, _UPDATE_COPY_TYPES, rows.updates)
                cur.execute(_UPDATE_STAGED_TASKS)

    # -- the reader thread -----------------------------------------------------------------------

    def _open_reader(self) -> None:
        self._reader_conn = self._dial()

    def _close_reader(self) -> None:
        conn, self._reader_conn = self._reader_conn, None
        if conn is not None:
            conn.close()

    def _reader_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The reads' connection, replaced first if the server dropped it."""
        conn = self._reader_conn
        if conn is None:
            raise InvalidState(f"storage {self.url} is not open")
        if conn.closed:
            logger.warning("storage %s: the reading connection was lost; reconnecting", self.url)
            conn = self._reader_conn = self._dial()
        return conn

    def _reading(self, read: Callable[[psycopg.Connection[tuple[Any, ...]]], _T]) -> _T:
        """Run ``read`` on the reads' connection, once more on a new one if that connection broke."""
        conn = self._reader_connection()
        try:
            return read(conn)
        except self._pg.OperationalError:
            if not conn.broken:
                raise
            logger.warning("storage %s: the reading connection broke during a read; reading again", self.url)
            return read(self._reader_connection())

    def _read_state(self, closed_tasks: bool, finished_tasks: bool) -> StoredState:
        return self._reading(partial(_read_state, _Q.select_loaded(closed_tasks, finished_tasks)))

    def _read_task(self, session_id: str, task_id: str) -> Task | None:
        row = self._reading(lambda conn: conn.execute(_Q.select_task, (session_id, task_id)).fetchone())
        return None if row is None else codec.task_from_row(row)

    def _read_tasks(
        self, session_id: str, offset: int, limit: int | None, states: tuple[int, ...] | None
    ) -> list[Task]:
        params = (session_id, *(states or ()), limit, offset)
        query = _Q.select_page(len(states or ()))
        rows = self._reading(lambda conn: conn.execute(query, params).fetchall())
        return [codec.task_from_row(row) for row in rows]


def _read_state(select_tasks: str, conn: psycopg.Connection[tuple[Any, ...]]) -> StoredState:
    # One snapshot for the three tables.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        sessions = _decode(cur, _Q.select_sessions, codec.session_from_row)
        cur.execute(_Q.count_tasks)
        apply_counts(sessions, cur.fetchall())
        return StoredState(
            applications=_decode(cur, _Q.select_applications, codec.application_from_row),
            sessions=sessions,
            tasks=_decode(cur, select_tasks, codec.task_from_row),
        )


def _copy(cur: psycopg.Cursor[tuple[Any, ...]], statement: str, types: Sequence[str], rows: list[codec.Row]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _decode(cur: psycopg.Cursor[tuple[Any, ...]], query: str, decode: Callable[[Sequence[Any]], _T]) -> list[_T]:
    cur.execute(query)
    return [decode(row) for row in cur.fetchall()]
