"""PostgreSQL only: schema and its version, connection failures, a dropped connection, and a whole
session manager running on it. Each test gets a schema of its own on the test server (see postgres.py).
"""

from __future__ import annotations

import secrets
import socket
from concurrent.futures import wait
from pathlib import Path

import flamepy
import pytest
from psycopg import sql

from flame.errors import Internal, InvalidArgument, Unavailable
from flame.session_manager.storage import (
    PostgresStorage,
    PutSession,
    PutTask,
    StoredState,
    UpdateTask,
    open_storage,
)
from flame.session_manager.storage._records import plan_batch
from flame.testing import LocalCluster
from flame.types import Event, Task, TaskState
from tests.integration.conftest import write_service
from tests.integration.storage import postgres
from tests.integration.storage.samples import minimal_session, minimal_task, reload, run


def test_schema_is_created_in_the_search_path_schema_with_its_version(postgres_url: str) -> None:
    store = open_storage(postgres_url)
    assert isinstance(store, PostgresStorage)
    run(reload(lambda: store))
    run(reload(lambda: open_storage(postgres_url)))  # a second start finds the schema and keeps it
    schema = postgres.schema_of(postgres_url)
    with postgres.admin(postgres_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
        ).fetchall()
        versions = conn.execute(sql.SQL("SELECT version FROM {}.schema_version").format(sql.Identifier(schema)))
        assert [name for (name,) in tables] == ["applications", "schema_version", "sessions", "tasks"]
        assert versions.fetchall() == [(2,)]


def test_refuses_a_newer_schema_naming_the_url_without_its_password(postgres_url: str) -> None:
    run(reload(lambda: open_storage(postgres_url)))
    with postgres.admin(postgres_url) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    store = open_storage(postgres_url)
    with pytest.raises(InvalidArgument, match=r"schema version 99, newer than version 2") as info:
        run(store.start())
    assert store.url in info.value.message and ":***@" in store.url
    _assert_no_password(postgres_url, info.value.message)


def test_unreachable_server_is_unavailable_and_named_without_its_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://flame:sekret@127.0.0.1:{port}/flame?connect_timeout=5"
    with pytest.raises(Unavailable, match="cannot connect to the storage database") as info:
        run(open_storage(url).start())
    message = info.value.message
    assert f"postgresql://flame:***@127.0.0.1:{port}/flame" in message and "sekret" not in message
    assert "Connection refused" in message and "postgres://user:password@host:port/database" in message


def test_wrong_password_or_database_is_unavailable_with_the_servers_reason(postgres_url: str) -> None:
    wrong_password = postgres.with_params(postgres_url, password="not-the-password")
    with pytest.raises(Unavailable, match="password authentication failed") as info:
        run(open_storage(wrong_password).start())
    assert "not-the-password" not in info.value.message and "password=***" in info.value.message

    base, _, query = postgres_url.partition("?")
    no_such_database = f"{base.rpartition('/')[0]}/no_such_database?{query}"
    with pytest.raises(Unavailable, match='database "no_such_database" does not exist') as info:
        run(open_storage(no_such_database).start())
    _assert_no_password(postgres_url, info.value.message)


def test_a_search_path_with_no_existing_schema_is_refused(postgres_url: str) -> None:
    url = postgres.with_params(postgres_url, options="-csearch_path=flame_no_such_schema")
    with pytest.raises(InvalidArgument, match=r"cannot prepare the storage database.*no schema has been selected"):
        run(open_storage(url).start())


def test_a_connection_dropped_by_the_server_is_replaced_and_the_batch_committed(postgres_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        store = open_storage(postgres_url)
        await store.start()
        await store.write(PutSession(minimal_session()), PutTask(minimal_task(task_id="1")))
        killed = _terminate_engine_connections(postgres_url)  # as a server restart or failover would
        await store.write(PutTask(minimal_task(task_id="2")))  # fails on the dead connection, then retried
        await store.write(PutTask(minimal_task(task_id="3")))
        assert await store.get_task("s0", "3") == minimal_task(task_id="3")  # the reader reconnects too
        commits = store.commits
        await store.stop()
        return killed, commits

    killed, commits = run(scenario())
    assert killed == 2 and commits == 3  # the writer's connection and the reader's
    state = run(reload(lambda: open_storage(postgres_url)))
    assert [t.id for t in state.tasks] == ["1", "2", "3"] and [s.id for s in state.sessions] == ["s0"]


def test_writes_fail_while_the_server_refuses_to_reconnect_and_recover_after(postgres_url: str) -> None:
    role = postgres.schema_of(postgres_url)  # a login of the test's own, so refusing it spares the rest
    password = secrets.token_hex(8)
    with postgres.admin(postgres_url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA {0} TO {0}").format(sql.Identifier(role)))
    url = postgres.with_params(postgres_url, user=role, password=password)

    def allow_login(allowed: bool) -> None:
        with postgres.admin(postgres_url) as conn:
            login = sql.SQL("LOGIN" if allowed else "NOLOGIN")
            conn.execute(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), login))

    async def scenario() -> list[BaseException | None]:
        store = open_storage(url)
        await store.start()
        await store.write(PutSession(minimal_session()), PutTask(minimal_task(task_id="1")))
        allow_login(False)
        _terminate_engine_connections(url)
        outcomes: list[BaseException | None] = []
        for task_id in ("2", "3"):  # the replay cannot reconnect either; nor can the next batch
            try:
                await store.write(PutTask(minimal_task(task_id=task_id)))
                outcomes.append(None)
            except Internal as exc:
                outcomes.append(exc)
        allow_login(True)
        await store.write(PutTask(minimal_task(task_id="4")))  # reconnects
        await store.stop()
        return outcomes

    try:
        outcomes = run(scenario())
        state = run(reload(lambda: open_storage(url)))
    finally:
        with postgres.admin(postgres_url) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))
    for outcome in outcomes:
        assert isinstance(outcome, Internal) and isinstance(outcome.__cause__, Unavailable)
        assert "not permitted to log in" in outcome.message and password not in outcome.message
    assert [t.id for t in state.tasks] == ["1", "4"]


def _terminate_engine_connections(url: str) -> int:
    with postgres.admin(postgres.server_url()) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (postgres.schema_of(url),),
        ).fetchall()
    return len(rows)


def _assert_no_password(url: str, message: str) -> None:
    password = postgres.password_of(url)
    assert password and password not in message


ECHO_SERVICE = """
    import flamepy

    class Echo(flamepy.FlameService):
        def on_session_enter(self, context):
            self.prefix = context.common_data()

        def on_task_invoke(self, context):
            return self.prefix + b":" + context.input

        def on_session_leave(self):
            pass

    flamepy.run(Echo())
"""


def test_a_session_manager_runs_on_postgres_and_recovers_from_it(postgres_url: str, tmp_path: Path) -> None:
    attrs = write_service(tmp_path, "echo_service", ECHO_SERVICE)
    with LocalCluster(executors=1, storage=postgres_url, data_dir=tmp_path / "first") as cluster:
        assert cluster.config.storage == postgres_url
        conn = flamepy.connect(cluster.endpoint)
        try:
            conn.register_application("pg-echo", attrs)
            session = conn.create_session(flamepy.SessionAttributes(application="pg-echo", common_data=b"pg"))
            futures = [session.run(f"t{i}".encode()) for i in range(20)]
            _, not_done = wait(futures, timeout=60)
            assert not not_done and [f.result() for f in futures] == [f"pg:t{i}".encode() for i in range(20)]
        finally:
            conn.close()

    # A new session manager over the same database: nothing in its data dir, everything in postgres.
    with LocalCluster(executors=1, storage=postgres_url, data_dir=tmp_path / "second") as cluster:
        conn = flamepy.connect(cluster.endpoint)
        try:
            assert conn.get_application("pg-echo") is not None
            stored = conn.get_session(session.id)
            assert (stored.pending, stored.running, stored.succeed, stored.failed) == (0, 0, 20, 0)
            assert stored.get_task("3").output == b"pg:t2"
        finally:
            conn.close()


# The schema as version 1 of this engine wrote it, kept verbatim to test the upgrade from it.
_VERSION_1 = (
    "CREATE TABLE schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), "
    "version INTEGER NOT NULL)",
    'CREATE TABLE applications (name TEXT COLLATE "C" PRIMARY KEY, spec TEXT NOT NULL, state INTEGER NOT NULL, '
    "creation_time BIGINT NOT NULL)",
    'CREATE TABLE sessions (id TEXT COLLATE "C" PRIMARY KEY, application TEXT NOT NULL, spec TEXT NOT NULL, '
    "common_data BYTEA, state INTEGER NOT NULL, creation_time BIGINT NOT NULL, completion_time BIGINT, "
    "pending BIGINT NOT NULL, running BIGINT NOT NULL, succeed BIGINT NOT NULL, failed BIGINT NOT NULL, "
    "cancelled BIGINT NOT NULL, events TEXT NOT NULL, next_task_id BIGINT NOT NULL)",
    'CREATE TABLE tasks (session_id TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, seq BIGINT, '
    "input BYTEA, output BYTEA, state INTEGER NOT NULL, creation_time BIGINT NOT NULL, completion_time BIGINT, "
    "events TEXT NOT NULL, attempts INTEGER NOT NULL, PRIMARY KEY (session_id, id))",
    "INSERT INTO schema_version (version) VALUES (1)",
    "INSERT INTO sessions VALUES ('s', 'app', '{}', NULL, 0, 1, NULL, 0, 1, 0, 0, 0, '[]', 2)",
    "INSERT INTO tasks VALUES ('s', '1', 1, 'one'::bytea, NULL, 1, 5, NULL, "
    '\'[[0,"task created",5],[1,"running on e1",6]]\', 1)',
)


def test_a_version_1_schema_is_upgraded_in_place_and_keeps_its_data(postgres_url: str) -> None:
    with postgres.admin(postgres_url) as conn:
        for statement in _VERSION_1:
            conn.execute(statement)
    created, running, done = Event(0, "task created", 5), Event(1, "running on e1", 6), Event(2, "succeeded", 8)

    async def scenario() -> tuple[StoredState, StoredState]:
        store = open_storage(postgres_url)
        await store.start()
        upgraded = await store.load()
        await store.write(UpdateTask("s", "1", TaskState.SUCCEED, 1, b"4", 8, done))
        await store.stop()
        return upgraded, await reload(lambda: open_storage(postgres_url))

    upgraded, after = run(scenario())
    assert upgraded.tasks == [
        Task("s", "1", input=b"one", state=TaskState.RUNNING, creation_time=5, events=[created, running], attempts=1)
    ]
    assert [(s.id, s.running) for s in upgraded.sessions] == [("s", 1)]
    assert after.tasks == [
        Task(
            "s",
            "1",
            input=b"one",
            output=b"4",
            state=TaskState.SUCCEED,
            creation_time=5,
            completion_time=8,
            events=[created, running, done],
            attempts=1,
        )
    ]
    with postgres.admin(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


@pytest.mark.parametrize("updates", [1, 100], ids=["executemany", "copy"])
def test_replaying_a_committed_batch_of_updates_appends_its_events_once(postgres_url: str, updates: int) -> None:
    # What the engine does after a connection broke during COMMIT: the batch may have landed already.
    async def scenario() -> StoredState:
        store = open_storage(postgres_url)
        assert isinstance(store, PostgresStorage)
        await store.start()
        tasks = [minimal_task(task_id=str(i)) for i in range(updates)]
        await store.write(*(PutTask(t) for t in tasks))
        batch = [UpdateTask(t.session_id, t.id, TaskState.RUNNING, 1, None, None, Event(1, "run", 7)) for t in tasks]
        await store.write(*batch)
        replay = store._prepare(plan_batch([(u, None) for u in batch], store._merge_update))
        await store._in_worker(replay)
        await store.stop()
        return await reload(lambda: open_storage(postgres_url))

    state = run(scenario())
    assert len(state.tasks) == updates
    assert all(t.events == [Event(1, "run", 7)] and t.state == TaskState.RUNNING for t in state.tasks)
