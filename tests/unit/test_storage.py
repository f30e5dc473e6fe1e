"""Storage engines: what the session manager relies on to never lose an acknowledged task.

Shared behaviour runs against both engines through the ``engine`` fixture; SQLite-only behaviour
(files, schema versions, crash survival, rollback) has its own tests. No pytest-asyncio: each test
drives its coroutine with ``run()``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

import flame.session_manager.storage as storage_pkg
from flame.errors import Internal, InvalidArgument, InvalidState, Unavailable
from flame.session_manager.storage import (
    DeleteApplication,
    DeleteSession,
    MemoryStorage,
    PutApplication,
    PutSession,
    PutTask,
    SqliteStorage,
    Storage,
    StoredState,
    open_storage,
)
from flame.session_manager.storage._records import Batch, plan_batch
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
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- sample objects --------------------------------------------------------------------------------


def full_application(name: str = "app") -> Application:
    return Application(
        name=name,
        spec=ApplicationSpec(
            shim=Shim.WASM,
            description="pi estimator",
            labels=["math", "demo"],
            image="ghcr.io/x/pi:1",
            command="/usr/bin/python3",
            arguments=["-m", "pi", "--fast"],
            environments={"A": "1", "B": "two"},
            working_directory="/tmp/work",
            max_instances=7,
            delay_release=30,
            schema=ApplicationSchema(input='{"type":"int"}', output=None, common_data="bytes"),
            url="file:///opt/pi",
            installer="pip",
        ),
        state=ApplicationState.DISABLED,
        creation_time=1_700_000_000_001,
    )


def full_session(session_id: str = "s1") -> Session:
    return Session(
        id=session_id,
        spec=SessionSpec(
            application="app",
            common_data=b"\x00\xffcommon",
            min_instances=1,
            max_instances=5,
            batch_size=4,
            priority=3,
            resreq=ResourceRequirement(cpu=2, memory=1024**3, gpu=1),
        ),
        state=SessionState.CLOSED,
        creation_time=1_700_000_000_002,
        completion_time=1_700_000_000_999,
        pending=1,
        running=2,
        succeed=3,
        failed=4,
        cancelled=5,
        events=[Event(1001, "bind failed", 1_700_000_000_010), Event(1002, None, 1_700_000_000_011)],
        next_task_id=42,
    )


def full_task(session_id: str = "s1", task_id: str = "1") -> Task:
    return Task(
        session_id=session_id,
        id=task_id,
        input=b"\x00in\xff",
        output=b"out\x00",
        state=TaskState.FAILED,
        creation_time=1_700_000_000_003,
        completion_time=1_700_000_000_004,
        events=[Event(1, "running on e1", 1_700_000_000_005), Event(3, None, 1_700_000_000_006)],
        attempts=2,
    )


def minimal_application(name: str = "bare") -> Application:
    return Application(name=name, spec=ApplicationSpec(), creation_time=5)


def minimal_session(session_id: str = "s0") -> Session:
    return Session(id=session_id, spec=SessionSpec(application="bare"), creation_time=1)


def minimal_task(session_id: str = "s0", task_id: str = "1") -> Task:
    return Task(session_id=session_id, id=task_id, creation_time=6)


# -- engines ---------------------------------------------------------------------------------------

Factory = Callable[[], Storage]


@pytest.fixture(params=["sqlite", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory of engines over the same store: each call is a "restart" of the session manager.

    SQLite gets a new object on the same file; memory keeps its data in the object, so its restart is
    stop()/start() of that one object.
    """
    if request.param == "sqlite":
        return lambda: open_storage(f"sqlite://{tmp_path / 'flame.db'}")
    memory = open_storage("memory")
    return lambda: memory


async def reload(factory: Factory) -> StoredState:
    """Start a fresh engine from the factory, read everything, stop it."""
    store = factory()
    await store.start()
    try:
        return await store.load()
    finally:
        await store.stop()


async def write_and_reload(factory: Factory, *batches: tuple[Any, ...]) -> StoredState:
    store = factory()
    await store.start()
    for batch in batches:
        await store.write(*batch)
    await store.stop()
    return await reload(factory)


# -- the public surface ----------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert sorted(storage_pkg.__all__) == [
        "DeleteApplication",
        "DeleteSession",
        "MemoryStorage",
        "PutApplication",
        "PutSession",
        "PutTask",
        "Record",
        "SqliteStorage",
        "Storage",
        "StoredState",
        "open_storage",
    ]


# -- shared behaviour ------------------------------------------------------------------------------


def test_round_trip_of_every_field(engine: Factory) -> None:
    empty_payload = replace(minimal_task("s0", "2"), input=b"", output=b"")
    records = (
        PutApplication(full_application()),
        PutApplication(minimal_application()),
        PutSession(full_session()),
        PutSession(minimal_session()),
        PutTask(full_task()),
        PutTask(minimal_task()),
        PutTask(empty_payload),
    )
    state = run(write_and_reload(engine, records))

    assert state.applications == [full_application(), minimal_application()]
    assert state.sessions == [minimal_session(), full_session()]  # by creation time
    assert state.tasks == [minimal_task(), empty_payload, full_task()]  # by session id, then task id
    # Types, not just values: IntEnum == int and b"" != None would hide a sloppy decoder.
    assert isinstance(state.applications[0].spec.shim, Shim)
    assert isinstance(state.applications[0].state, ApplicationState)
    assert isinstance(state.sessions[1].state, SessionState)
    assert isinstance(state.tasks[2].state, TaskState)
    assert state.tasks[1].input == b"" and state.tasks[1].output == b""
    assert state.tasks[0].input is None and state.sessions[0].spec.common_data is None
    assert state.sessions[0].spec.resreq is None and state.applications[1].spec.schema is None


def test_puts_are_upserts(engine: Factory) -> None:
    task = minimal_task()
    session = minimal_session()
    app = minimal_application()
    first = (PutApplication(app), PutSession(session), PutTask(task))
    done_task = replace(task, state=TaskState.SUCCEED, output=b"42", completion_time=9, attempts=1)
    closed = replace(session, state=SessionState.CLOSED, succeed=1, next_task_id=2)
    second = (PutApplication(replace(app, state=ApplicationState.DISABLED)), PutSession(closed), PutTask(done_task))

    state = run(write_and_reload(engine, first, second))

    assert state.tasks == [done_task]
    assert state.sessions == [closed]
    assert [a.state for a in state.applications] == [ApplicationState.DISABLED]


def test_delete_session_removes_its_tasks_and_nothing_else(engine: Factory) -> None:
    keep, drop = minimal_session("keep"), minimal_session("drop")
    first = (
        PutSession(keep),
        PutSession(drop),
        *(PutTask(minimal_task(sid, str(i))) for sid in ("keep", "drop") for i in range(1, 4)),
    )
    state = run(write_and_reload(engine, first, (DeleteSession("drop"), DeleteSession("never-existed"))))

    assert [s.id for s in state.sessions] == ["keep"]
    assert [(t.session_id, t.id) for t in state.tasks] == [("keep", "1"), ("keep", "2"), ("keep", "3")]


def test_delete_application(engine: Factory) -> None:
    first = (PutApplication(minimal_application("a")), PutApplication(minimal_application("b")))
    state = run(write_and_reload(engine, first, (DeleteApplication("a"), DeleteApplication("zzz"))))
    assert [a.name for a in state.applications] == ["b"]


def test_one_batch_applies_records_in_order_last_one_winning(engine: Factory) -> None:
    async def scenario() -> tuple[StoredState, int]:
        store = engine()
        await store.start()
        await store.write(PutSession(minimal_session("old")), PutTask(minimal_task("old", "1")))
        commits = store.commits
        # All of these are queued before the writer runs, so they form exactly one batch.
        store.write_nowait(PutTask(minimal_task("s", "1")))
        store.write_nowait(PutTask(replace(minimal_task("s", "1"), state=TaskState.SUCCEED)))
        store.write_nowait(PutSession(minimal_session("gone")), PutTask(minimal_task("gone", "1")))
        store.write_nowait(DeleteSession("gone"))
        store.write_nowait(DeleteSession("old"), PutSession(minimal_session("old")))
        store.write_nowait(PutTask(minimal_task("old", "5")))
        store.write_nowait(PutApplication(minimal_application("x")), DeleteApplication("x"))
        store.write_nowait(DeleteApplication("y"), PutApplication(minimal_application("y")))
        await store.flush()
        batches = store.commits - commits
        await store.stop()
        return await reload(engine), batches

    state, batches = run(scenario())

    assert batches == 1
    assert [(t.session_id, t.id, t.state) for t in state.tasks] == [
        ("old", "5", TaskState.PENDING),  # the delete dropped task 1; the later put survived
        ("s", "1", TaskState.SUCCEED),  # the last put of a key wins
    ]
    assert [s.id for s in state.sessions] == ["old"]  # "gone" was put then deleted
    assert [a.name for a in state.applications] == ["y"]  # x deleted after its put, y put after delete


def test_plan_batch_keeps_one_entry_per_key() -> None:
    first, last = minimal_task("s", "1"), replace(minimal_task("s", "1"), attempts=3)
    batch = plan_batch(
        [
            PutTask(first),
            PutTask(minimal_task("s", "2")),
            PutTask(last),
            PutSession(minimal_session("s")),
            PutSession(full_session("s")),
            PutTask(minimal_task("t", "1")),
            DeleteSession("t"),
            DeleteSession("t"),
        ]
    )
    assert isinstance(batch, Batch)
    assert [(t.session_id, t.id) for t in batch.tasks] == [("s", "1"), ("s", "2")]
    assert batch.tasks[0] is last
    assert batch.sessions == [full_session("s")]
    assert batch.deleted_sessions == ["t"]
    assert batch.records == 8


def test_concurrent_writes_share_a_commit(engine: Factory) -> None:
    async def scenario() -> tuple[int, StoredState]:
        store = engine()
        await store.start()
        await asyncio.gather(*(store.write(PutTask(minimal_task("s", str(i)))) for i in range(200)))
        commits = store.commits
        await store.stop()
        return commits, await reload(engine)

    commits, state = run(scenario())
    assert commits <= 2  # one fsync-free transaction for 200 writers, not 200
    assert len(state.tasks) == 200


def test_writes_arriving_during_a_commit_form_the_next_batch(engine: Factory) -> None:
    async def writer(store: Storage, worker: int) -> None:
        for i in range(20):  # each write waits for its commit before the next is issued
            await store.write(PutTask(minimal_task(f"w{worker}", str(i))))

    async def scenario() -> tuple[int, StoredState]:
        store = engine()
        await store.start()
        await asyncio.gather(*(writer(store, worker) for worker in range(50)))
        commits = store.commits
        await store.stop()
        return commits, await reload(engine)

    commits, state = run(scenario())
    assert len(state.tasks) == 1000
    assert commits <= 100  # a commit per write would be 1000


def test_objects_are_captured_when_the_batch_is_cut(engine: Factory) -> None:
    async def scenario() -> tuple[StoredState, StoredState]:
        store = engine()
        await store.start()
        task = minimal_task()
        await store.write(PutTask(task))
        task.state = TaskState.SUCCEED  # mutated but never written again
        task.events.append(Event(2, "done", 7))
        loaded = await store.load()
        loaded.tasks[0].events.append(Event(9, "caller scribbles on a loaded copy", 8))
        await store.stop()
        return loaded, await reload(engine)

    _, state = run(scenario())
    assert state.tasks == [minimal_task()]


def test_flush_waits_for_queued_nowait_records(engine: Factory) -> None:
    async def scenario() -> tuple[int, StoredState]:
        store = engine()
        await store.start()
        store.write_nowait(PutTask(minimal_task()))
        await store.flush()
        commits = store.commits
        state = await store.load()
        await store.stop()
        return commits, state

    commits, state = run(scenario())
    assert commits == 1
    assert state.tasks == [minimal_task()]


def test_stop_commits_what_is_queued(engine: Factory) -> None:
    async def scenario() -> StoredState:
        store = engine()
        await store.start()
        store.write_nowait(PutTask(minimal_task()))
        await store.stop()
        await store.stop()  # idempotent
        return await reload(engine)

    assert run(scenario()).tasks == [minimal_task()]


def test_lifecycle_errors(engine: Factory) -> None:
    async def scenario() -> None:
        store = engine()
        with pytest.raises(InvalidState, match="not running"):
            await store.write(PutTask(minimal_task()))
        with pytest.raises(InvalidState, match="start"):
            await store.load()
        await store.flush()  # nothing queued: returns
        async with store:
            with pytest.raises(InvalidState, match="already started"):
                await store.start()
            with pytest.raises(TypeError, match="not a storage record"):
                store.write_nowait(minimal_task())  # type: ignore[arg-type]
        with pytest.raises(InvalidState, match="not running"):
            store.write_nowait(PutTask(minimal_task()))

    run(scenario())


def test_a_dead_writer_fails_waiting_writes_instead_of_hanging(engine: Factory) -> None:
    async def scenario() -> None:
        store = engine()
        await store.start()
        await asyncio.sleep(0)  # let the writer park, waiting for work
        pending = asyncio.ensure_future(store.write(PutTask(minimal_task())))
        writer = store._writer
        assert writer is not None
        writer.cancel()  # as at event-loop teardown
        with pytest.raises(Unavailable, match="stopped before committing"):
            await pending
        assert not store.running
        with pytest.raises(InvalidState, match="not running"):
            store.write_nowait(PutTask(minimal_task()))
        await store.stop()

    run(scenario())


def test_tasks_load_in_numeric_order(engine: Factory) -> None:
    ids = ["10", "2", "1", "x", "100"]
    records = [PutTask(minimal_task(sid, i)) for sid in ("b", "a") for i in ids]
    state = run(write_and_reload(engine, tuple(records)))
    expected = ["1", "2", "10", "100", "x"]
    assert [(t.session_id, t.id) for t in state.tasks] == [(s, i) for s in ("a", "b") for i in expected]


# -- SQLite only -----------------------------------------------------------------------------------


def test_sqlite_file_is_created_with_wal_and_schema_version(tmp_path: Path) -> None:
    store = open_storage("sqlite://nested/dir/flame.db", data_dir=tmp_path)
    assert isinstance(store, SqliteStorage)
    run(_write_one_and_stop(store))
    conn = sqlite3.connect(tmp_path / "nested" / "dir" / "flame.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT session_id, id, seq FROM tasks").fetchall() == [("s0", "1", 1)]
    finally:
        conn.close()


async def _write_one_and_stop(store: Storage) -> None:
    async with store:
        await store.write(PutTask(minimal_task()))


def test_sqlite_failed_commit_rolls_back_and_fails_every_waiter(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    run(reload(lambda: open_storage(f"sqlite://{path}")))  # creates the schema
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON tasks WHEN NEW.id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    conn.commit()
    conn.close()

    async def scenario() -> tuple[list[BaseException | None], StoredState]:
        store = open_storage(f"sqlite://{path}")
        await store.start()
        results = await asyncio.gather(
            store.write(PutSession(minimal_session())),
            store.write(PutTask(minimal_task())),
            store.write(PutTask(minimal_task(task_id="boom"))),
            return_exceptions=True,
        )
        await store.write(PutTask(minimal_task(task_id="2")))  # the engine keeps working
        state = await store.load()
        await store.stop()
        return list(results), state

    results, state = run(scenario())
    for result in results:
        assert isinstance(result, Internal)
        assert "boom" in result.message
        assert isinstance(result.__cause__, sqlite3.Error)
    assert results[0] is not results[1]
    assert state.sessions == [] and [t.id for t in state.tasks] == ["2"]


_CHILD = """
import asyncio, sys
from flame.session_manager.storage import PutSession, PutTask, open_storage
from flame.types import Session, SessionSpec, Task

async def main():
    store = open_storage("sqlite://" + sys.argv[1])
    await store.start()
    await store.write(PutSession(Session(id="s", spec=SessionSpec(application="app"))))
    for start in range(0, 1_000_000, 25):
        ids = [str(n) for n in range(start, start + 25)]
        await asyncio.gather(*(store.write(PutTask(Task("s", i, input=i.encode()))) for i in ids))
        sys.stdout.write("ok " + " ".join(ids) + "\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


def test_sqlite_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "flame.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    try:
        assert child.stdout is not None
        while len(acknowledged) < 500:
            line = child.stdout.readline()
            assert line.startswith("ok "), (
                f"child stopped early: {line!r} {child.stderr.read() if child.stderr else ''}"
            )
            acknowledged.extend(line.split()[1:])
        os.kill(child.pid, signal.SIGKILL)  # while it is still writing
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL

    state = run(reload(lambda: open_storage(f"sqlite://{path}")))
    stored = {task.id: task.input for task in state.tasks}
    missing = [i for i in acknowledged if stored.get(i) != i.encode()]
    assert not missing, f"{len(missing)} acknowledged tasks lost, e.g. {missing[:5]}"


def test_sqlite_commits_10000_tasks_in_well_under_a_second(tmp_path: Path) -> None:
    async def scenario() -> float:
        store = open_storage(f"sqlite://{tmp_path / 'flame.db'}")
        await store.start()
        records = [PutTask(Task("s", str(i), input=b"x" * 100, creation_time=i)) for i in range(10_000)]
        started = time.perf_counter()
        await store.write(*records)
        elapsed = time.perf_counter() - started
        assert store.commits == 1
        await store.stop()
        return elapsed

    elapsed = run(scenario())
    print(f"10,000-task batch committed in {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0


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


# -- urls ------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "url",
    [
        "",
        "postgres://localhost/flame",
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
    assert "sqlite:///" in message and "memory" in message and "none" in message
