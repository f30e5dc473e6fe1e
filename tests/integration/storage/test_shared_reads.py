"""Reads every engine shares (memory, SQLite, PostgreSQL): a load bounded to what open sessions
need, session counters counted from the stored tasks, and one task or a page of tasks on demand.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest

from flame.errors import InvalidArgument, InvalidState
from flame.session_manager.storage import PutSession, PutTask, Storage, StoredState, UpdateTask
from flame.types import Event, Session, SessionState, Task, TaskState
from tests.integration.storage.samples import Engine, minimal_session, minimal_task, reload, run

# Task n of a session ends in this state: a mix of every state, in an order unlike the ids'.
STATES = [TaskState.SUCCEED, TaskState.PENDING, TaskState.FAILED, TaskState.RUNNING, TaskState.CANCELLED]


def _task(session_id: str, n: int) -> Task:
    return replace(minimal_task(session_id, str(n)), input=f"{session_id}/{n}".encode())


def _update(task: Task) -> UpdateTask:
    state = STATES[int(task.id) % len(STATES)]
    return UpdateTask(task.session_id, task.id, state, 1, task.id.encode(), 9, Event(int(state), state.name, 9))


def _after_update(task: Task) -> Task:
    update = _update(task)
    assert update.event is not None
    return replace(task, state=update.state, attempts=1, output=update.output, completion_time=9, events=[update.event])


async def _fill(store: Storage, sessions: dict[str, SessionState], tasks: int) -> None:
    """Sessions in the given states, each with ``tasks`` tasks put and then narrowly updated."""
    for session_id, state in sessions.items():
        # The counters a put carries are deliberately wrong: a load must count the tasks instead.
        session = replace(minimal_session(session_id), state=state, pending=99, succeed=-1)
        created = [_task(session_id, n) for n in range(1, tasks + 1)]
        await store.write(PutSession(session), *(PutTask(t) for t in created))
        await store.write(*(_update(t) for t in created))


def _expected_counts(tasks: int) -> dict[str, int]:
    counts = dict.fromkeys(("pending", "running", "succeed", "failed", "cancelled"), 0)
    for n in range(1, tasks + 1):
        counts[STATES[n % len(STATES)].name.lower()] += 1
    return counts


def _counts(session: Session) -> dict[str, int]:
    names = ("pending", "running", "succeed", "failed", "cancelled")
    return {name: getattr(session, name) for name in names}


def test_load_without_closed_tasks_keeps_every_session_and_its_counters(engine: Engine) -> None:
    sessions = {"open-a": SessionState.OPEN, "closed": SessionState.CLOSED, "open-b": SessionState.OPEN}

    async def scenario() -> tuple[StoredState, StoredState]:
        store = engine()
        await store.start()
        await _fill(store, sessions, 12)
        await store.stop()
        store = engine()  # a restart
        await store.start()
        bounded = await store.load(closed_tasks=False)
        await store.stop()
        return bounded, await reload(engine)

    bounded, everything = run(scenario())
    assert [s.id for s in bounded.sessions] == ["closed", "open-a", "open-b"]  # equal creation times: by id
    for session in (*bounded.sessions, *everything.sessions):
        assert _counts(session) == _expected_counts(12), session.id
    assert {t.session_id for t in bounded.tasks} == {"open-a", "open-b"}
    assert bounded.tasks == [t for t in everything.tasks if t.session_id != "closed"]
    assert everything.tasks == sorted(
        (_after_update(_task(sid, n)) for sid in sessions for n in range(1, 13)),
        key=lambda t: (t.session_id, int(t.id)),
    )


def test_a_session_without_tasks_counts_zero(engine: Engine) -> None:
    async def scenario() -> StoredState:
        store = engine()
        async with store:
            await store.write(PutSession(replace(minimal_session("empty"), pending=3, running=2)))
        return await reload(engine)

    assert _counts(run(scenario()).sessions[0]) == dict.fromkeys(_expected_counts(0), 0)


def test_get_task_and_list_tasks_page_in_numeric_id_order_with_a_state_filter(engine: Engine) -> None:
    async def scenario() -> None:
        store = engine()
        await store.start()
        await _fill(store, {"s": SessionState.CLOSED, "other": SessionState.OPEN}, 25)
        everything = [_after_update(_task("s", n)) for n in range(1, 26)]

        assert await store.get_task("s", "7") == everything[6]
        assert await store.get_task("s", "26") is None
        assert await store.get_task("nope", "1") is None
        assert await store.list_tasks("s") == everything  # "10" after "9": numeric order
        assert await store.list_tasks("s", offset=5, limit=10) == everything[5:15]
        assert await store.list_tasks("s", offset=20, limit=10) == everything[20:]
        assert await store.list_tasks("s", offset=25) == []
        assert await store.list_tasks("s", limit=0) == []
        assert await store.list_tasks("nope") == []

        finished = [TaskState.FAILED, TaskState.SUCCEED]
        chosen = [t for t in everything if t.state in finished]
        assert await store.list_tasks("s", states=finished) == chosen
        assert await store.list_tasks("s", states=finished, offset=2, limit=3) == chosen[2:5]
        assert await store.list_tasks("s", states=[TaskState.PENDING]) == [t for t in everything if t.state == 0]
        assert await store.list_tasks("s", states=[]) == []

        # A later change is seen by the very next read, even one not awaited before it.
        store.write_nowait(UpdateTask("s", "7", TaskState.SUCCEED, 2, b"again", 10, None))
        again = await store.get_task("s", "7")
        assert again is not None and (again.state, again.attempts, again.output) == (TaskState.SUCCEED, 2, b"again")
        assert again.input == b"s/7" and again.events == everything[6].events

        # Reads hand out copies: scribbling on one changes nothing stored.
        again.events.append(Event(5, "scribble", 11))
        assert await store.get_task("s", "7") == replace(again, events=everything[6].events)
        await store.stop()

    run(scenario())


def test_reads_interleaved_with_writes_see_every_earlier_write(engine: Engine) -> None:
    async def reader_writer(store: Storage, n: int) -> None:
        task = _task("s", n)
        await store.write(PutTask(task))
        assert await store.get_task("s", str(n)) == task
        store.write_nowait(_update(task))
        assert await store.get_task("s", str(n)) == _after_update(task)

    async def scenario() -> None:
        store = engine()
        async with store:
            await asyncio.gather(*(reader_writer(store, n) for n in range(1, 41)))
            assert len(await store.list_tasks("s")) == 40

    run(scenario())


def test_reads_refuse_bad_arguments_and_a_stopped_store(engine: Engine) -> None:
    async def scenario() -> None:
        store = engine()
        with pytest.raises(InvalidState, match="start"):
            await store.get_task("s", "1")
        async with store:
            for kwargs, message in [
                ({"offset": -1}, "offset must be a whole number >= 0"),
                ({"offset": 1.5}, "offset must be a whole number >= 0"),
                ({"limit": -2}, "limit must be a whole number >= 0 or None"),
                ({"limit": True}, "limit must be a whole number >= 0 or None"),
                ({"states": [7]}, "states must be TaskState values"),
            ]:
                with pytest.raises(InvalidArgument, match=message):
                    await store.list_tasks("s", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(InvalidState, match="not running"):
            await store.list_tasks("s")

    run(scenario())


def test_a_slow_read_does_not_hold_up_commits(engine: Engine) -> None:
    if engine.kind == "memory":
        pytest.skip("memory reads and commits run inline on the event loop: nothing to hold up")

    async def scenario() -> None:
        store = engine()
        async with store:
            reader = store._reader
            assert reader is not None
            release = threading.Event()
            reading = asyncio.get_running_loop().create_future()
            # Occupy the reader thread, as paging through a huge closed session would.
            reader.submit(lambda: release.wait(30), lambda *_: reading.set_result(None))
            try:
                await store.write(PutTask(_task("s", 1)))  # commits while the reader is busy
                await store.write(_update(_task("s", 1)))
                pending_read = asyncio.ensure_future(store.get_task("s", "1"))
                await store.flush()
                assert not pending_read.done()  # queued behind the slow read
            finally:
                release.set()
            await reading
            assert await pending_read == _after_update(_task("s", 1))

    run(scenario())


def test_load_without_finished_tasks_keeps_next_task_id_past_every_stored_id(engine: Engine) -> None:
    sessions = {"open": SessionState.OPEN, "closed": SessionState.CLOSED}

    async def scenario() -> tuple[StoredState, StoredState]:
        store = engine()
        async with store:
            await _fill(store, sessions, 12)  # ids 1..12; the sessions were put with next_task_id 0
        store = engine()
        async with store:
            unfinished = await store.load(closed_tasks=False, finished_tasks=False)
            open_only = await store.load(closed_tasks=True, finished_tasks=False)
        return unfinished, open_only

    unfinished, with_closed = run(scenario())
    expected = [
        _after_update(_task("open", n))
        for n in range(1, 13)
        if STATES[n % len(STATES)] in (TaskState.PENDING, TaskState.RUNNING)
    ]
    assert unfinished.tasks == expected
    assert {t.session_id for t in with_closed.tasks} == {"closed", "open"}
    assert all(not t.state.is_final for t in with_closed.tasks)
    for session in unfinished.sessions:
        # Task 12 succeeded and is not loaded, yet no id up to 12 may be handed out again.
        assert session.next_task_id == 13, session.id
        assert _counts(session) == _expected_counts(12)
