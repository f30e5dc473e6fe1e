"""Behaviour every engine shares, run on memory, SQLite and PostgreSQL alike (the ``engine`` fixture).

These are the promises the session manager relies on: every field round-trips, puts are upserts,
a batch applies its records in order, writes are grouped into few commits, and what a write stored
is what the object was when its batch was cut.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from flame.errors import InvalidState, Unavailable
from flame.session_manager.storage import (
    DeleteApplication,
    DeleteSession,
    PutApplication,
    PutSession,
    PutTask,
    Record,
    Storage,
    StoredState,
)
from flame.types import ApplicationState, Event, SessionState, Shim, TaskState
from tests.integration.storage.samples import (
    Factory,
    full_application,
    full_session,
    full_task,
    minimal_application,
    minimal_session,
    minimal_task,
    reload,
    run,
    write_and_reload,
)


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
    # By creation time; the counters are counted from the stored tasks, not taken from the put.
    counted = replace(full_session(), pending=0, running=0, succeed=0, failed=1, cancelled=0)
    assert state.sessions == [replace(minimal_session(), pending=2, next_task_id=3), counted]  # past ids 1, 2
    assert state.tasks == [minimal_task(), empty_payload, full_task()]  # by session id, then task id
    # Types, not just values: IntEnum == int and b"" != None would hide a sloppy decoder.
    assert isinstance(state.applications[0].spec.shim, Shim)
    assert isinstance(state.applications[0].state, ApplicationState)
    assert isinstance(state.sessions[1].state, SessionState)
    assert isinstance(state.tasks[2].state, TaskState)
    assert state.tasks[1].input == b"" and state.tasks[1].output == b""
    assert type(state.tasks[2].input) is bytes and type(state.sessions[1].spec.common_data) is bytes
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


def test_objects_are_captured_when_written(engine: Factory) -> None:
    async def scenario() -> tuple[StoredState, StoredState]:
        store = engine()
        await store.start()
        task, session = minimal_task(), minimal_session()
        store.write_nowait(PutTask(task), PutSession(session))
        # Changed in the same turn of the loop, before the batch is cut, but never written again.
        task.state = TaskState.SUCCEED
        task.events.append(Event(2, "done", 7))
        session.state = SessionState.CLOSED
        await store.flush()
        loaded = await store.load()
        loaded.tasks[0].events.append(Event(9, "caller scribbles on a loaded copy", 8))
        await store.stop()
        return loaded, await reload(engine)

    _, state = run(scenario())
    assert state.tasks == [minimal_task()]
    assert [s.state for s in state.sessions] == [SessionState.OPEN]


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


def test_a_cancelled_stop_leaves_no_write_waiting_forever(engine: Factory) -> None:
    async def scenario() -> tuple[list[BaseException | None], StoredState]:
        store = engine()
        await store.start()
        writes = [asyncio.ensure_future(store.write(PutTask(minimal_task("s", str(i))))) for i in range(3)]
        told: list[BaseException | None] = []
        store.write_nowait(PutTask(minimal_task("s", "9")), on_commit=told.append)
        stopping = asyncio.ensure_future(store.stop())
        await asyncio.sleep(0)  # one turn: the writes are queued and stop() is draining them
        stopping.cancel()  # as at Ctrl-C
        results = await asyncio.gather(*writes, return_exceptions=True)
        await asyncio.wait({stopping})
        assert not store.running
        with pytest.raises(InvalidState, match="not running"):
            store.write_nowait(PutTask(minimal_task()))
        await store.stop()  # returns: the cancelled stop() already let go of the store
        return [*results, *told], await reload(engine)

    results, state = run(scenario())
    # Each write either committed or was told it was not; none hangs (run() has a deadline).
    stored = {t.id for t in state.tasks}
    for task_id, result in zip(["0", "1", "2", "9"], results, strict=True):
        assert (result is None) == (task_id in stored), (task_id, result)
        assert result is None or isinstance(result, Unavailable)


def test_tasks_load_in_numeric_order(engine: Factory) -> None:
    ids = ["10", "2", "1", "x", "100"]
    records = [PutTask(minimal_task(sid, i)) for sid in ("b", "a") for i in ids]
    state = run(write_and_reload(engine, tuple(records)))
    expected = ["1", "2", "10", "100", "x"]
    assert [(t.session_id, t.id) for t in state.tasks] == [(s, i) for s in ("a", "b") for i in expected]


def test_ids_load_in_code_point_order_whatever_the_database_collation(engine: Factory) -> None:
    # A linguistic collation (the test server's database uses ICU en-US) would sort "a" before "B"
    # and ignore the punctuation; the session manager expects the order Python's sorted() gives.
    session_ids = ["a", "B", "a-b", "a.b", "Z9", "ab", "a_b", "0"]
    records: list[Record] = [PutSession(replace(minimal_session(sid), creation_time=7)) for sid in session_ids]
    records += [PutTask(minimal_task(sid, "x" + sid)) for sid in session_ids]
    records += [PutApplication(minimal_application(name)) for name in session_ids]
    state = run(write_and_reload(engine, tuple(records)))
    expected = sorted(session_ids)
    assert [s.id for s in state.sessions] == expected  # equal creation times: by id
    assert [t.session_id for t in state.tasks] == expected
    assert [a.name for a in state.applications] == expected
