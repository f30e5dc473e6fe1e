"""The hot path every engine shares (memory, SQLite, PostgreSQL): narrow task updates, how a batch
of puts and updates reduces, commit callbacks, and what a failed commit fails.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pytest

from flame.errors import Internal
from flame.session_manager.storage import (
    DeleteSession,
    OnCommit,
    PutSession,
    PutTask,
    Storage,
    StoredState,
    UpdateTask,
)
from flame.session_manager.storage._records import Batch
from flame.types import Event, Task, TaskState
from tests.integration.storage.samples import (
    Engine,
    minimal_session,
    minimal_task,
    refuse_task_in_database,
    reload,
    run,
)

RUNNING = Event(1, "running on executor e-1", 1_700_000_000_100)
DONE = Event(2, 'done: "quoted", [bracketed], ünïcode\n', 1_700_000_000_200)


def _finished(task: Task, output: bytes = b"result") -> Task:
    return replace(
        task,
        state=TaskState.SUCCEED,
        output=output,
        attempts=1,
        completion_time=1_700_000_000_200,
        events=[*task.events, RUNNING, DONE],
    )


def _running(task: Task) -> UpdateTask:
    return UpdateTask(task.session_id, task.id, TaskState.RUNNING, 1, None, None, RUNNING)


def _succeeded(task: Task, output: bytes = b"result") -> UpdateTask:
    return UpdateTask(task.session_id, task.id, TaskState.SUCCEED, 1, output, 1_700_000_000_200, DONE)


def _created(task_id: str, session_id: str = "s") -> Task:
    task = replace(minimal_task(session_id, task_id), input=b"in-" + task_id.encode())
    task.events.append(Event(0, "task created", 6))
    return task


def test_updates_in_later_batches_round_trip(engine: Engine) -> None:
    task = _created("1")

    async def scenario() -> StoredState:
        store = engine()
        await store.start()
        await store.write(PutSession(minimal_session("s")), PutTask(task))
        await store.write(_running(task))
        await store.write(_succeeded(task))
        await store.write(UpdateTask("s", "1", TaskState.SUCCEED, 1, b"result", 1_700_000_000_200, None))
        await store.stop()
        return await reload(engine)

    state = run(scenario())
    assert state.tasks == [_finished(task)]  # input kept, the events complete and in order
    assert state.tasks[0].input == b"in-1" and isinstance(state.tasks[0].state, TaskState)


def test_a_put_after_updates_starts_the_events_afresh(engine: Engine) -> None:
    task = _created("1")
    requeued = replace(task, events=[*task.events, Event(0, "requeued", 9)])

    async def scenario() -> StoredState:
        store = engine()
        await store.start()
        await store.write(PutTask(task))
        await store.write(_running(task))
        await store.write(PutTask(requeued))  # a full put names the whole event list
        await store.stop()
        return await reload(engine)

    assert run(scenario()).tasks == [requeued]


def test_puts_and_updates_in_one_batch_reduce_to_the_right_rows(engine: Engine) -> None:
    stored, fresh, gone, never = _created("1"), _created("2"), _created("1", "gone"), _created("7")

    async def scenario() -> tuple[int, StoredState]:
        store = engine()
        await store.start()
        await store.write(PutSession(minimal_session("s")), PutTask(stored), PutSession(minimal_session("gone")))
        commits = store.commits
        # All queued in one turn of the loop, so they form exactly one batch.
        store.write_nowait(_running(stored))
        store.write_nowait(PutTask(fresh), _running(fresh))
        store.write_nowait(_succeeded(stored), _succeeded(fresh, b"fresh"))
        store.write_nowait(PutTask(gone), _running(gone), DeleteSession("gone"))
        store.write_nowait(_succeeded(gone))  # after the delete: matches no row
        store.write_nowait(_succeeded(never))  # never stored: changes nothing
        await store.flush()
        batches = store.commits - commits
        await store.stop()
        return batches, await reload(engine)

    batches, state = run(scenario())
    assert batches == 1
    assert state.tasks == [_finished(stored), _finished(fresh, b"fresh")]
    assert [s.id for s in state.sessions] == ["s"]


def test_on_commit_is_called_on_the_loop_once_per_write_after_its_batch_commits(engine: Engine) -> None:
    async def scenario() -> None:
        store = engine()
        await store.start()
        loop_thread = threading.get_ident()
        told: list[tuple[str, BaseException | None, int]] = []

        def tell(name: str) -> OnCommit:
            return lambda error: told.append((name, error, threading.get_ident()))

        store.write_nowait(PutTask(_created("1")), on_commit=tell("a"))
        store.write_nowait(_running(_created("1")), on_commit=tell("b"))
        store.write_nowait(on_commit=tell("after a and b"))  # no records: once all before it committed
        assert told == []  # never synchronously
        await store.flush()
        assert told == [("a", None, loop_thread), ("b", None, loop_thread), ("after a and b", None, loop_thread)]
        store.write_nowait(on_commit=tell("idle"))  # nothing queued: soon, still not synchronously
        assert len(told) == 3
        await store.flush()
        await asyncio.sleep(0)  # the one turn call_soon() takes
        assert told[3:] == [("idle", None, loop_thread)]
        stored = await store.get_task("s", "1")
        assert stored is not None and stored.state == TaskState.RUNNING
        await store.stop()

    run(scenario())


def _arm_failure(engine: Engine, store: Storage, monkeypatch: pytest.MonkeyPatch, task_id: str) -> None:
    """Make commits that touch ``task_id`` fail: in the database itself where there is one."""
    if engine.kind != "memory":
        refuse_task_in_database(engine.url, task_id)
        return
    prepare = store._prepare

    def failing_prepare(batch: Batch) -> object:
        commit = prepare(batch)
        if any(u.task_id == task_id for u in batch.updates) or any(t.id == task_id for t in batch.tasks):

            def fail() -> None:
                raise RuntimeError("boom")

            return fail
        return commit

    monkeypatch.setattr(store, "_prepare", failing_prepare)


def test_a_failed_commit_applies_nothing_and_fails_exactly_its_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, boom, after = _created("1"), _created("boom"), _created("3")

    async def scenario() -> tuple[dict[str, BaseException | None], StoredState]:
        store = engine()
        await store.start()
        await store.write(PutSession(minimal_session("s")), PutTask(before), PutTask(boom))
        _arm_failure(engine, store, monkeypatch, "boom")
        told: dict[str, BaseException | None] = {}
        # Batch 1: the update of "boom" fails it, with everything else in it. (The write() task is
        # created first so that it queues its records in the same turn as the write_nowait.)
        failing = asyncio.ensure_future(store.write(_running(boom), PutTask(_created("2"))))
        store.write_nowait(_succeeded(before), on_commit=lambda error: told.__setitem__("nowait-1", error))
        await asyncio.sleep(0)  # one turn: both queued, and the cut scheduled after them has run
        # Then, queued while batch 1 commits (or after it failed): a batch (or two) of their own, which commit.
        store.write_nowait(PutTask(after), on_commit=lambda error: told.__setitem__("nowait-2", error))
        succeeding = asyncio.ensure_future(store.write(_running(after)))
        results = await asyncio.gather(failing, succeeding, return_exceptions=True)
        told["write-1"], told["write-2"] = results
        state = await store.load()
        await store.stop()
        return told, state

    told, state = run(scenario())
    assert told["nowait-2"] is None and told["write-2"] is None
    for name in ("nowait-1", "write-1"):
        error = told[name]
        assert isinstance(error, Internal), (name, error)
        assert "boom" in error.message and "nothing of the batch was written" in error.message
        assert error.__cause__ is not None
    assert told["nowait-1"] is not told["write-1"]
    running_after = replace(after, state=TaskState.RUNNING, attempts=1, events=[*after.events, RUNNING])
    assert state.tasks == [before, running_after, boom]  # neither the update of 1 nor the put of 2 landed


async def _lifecycle(store: Storage, worker: int, tasks: int) -> None:
    """One coroutine's tasks: created, then run and finished, each record written as it happens."""
    mine = [_created(str(worker * 1000 + i), f"w{worker % 3}") for i in range(tasks)]
    await store.write(*(PutTask(task) for task in mine))
    done = asyncio.get_running_loop().create_future()
    remaining = len(mine)

    def finished(error: BaseException | None) -> None:
        nonlocal remaining
        assert error is None
        remaining -= 1
        if remaining == 0:
            done.set_result(None)

    for task in mine:
        store.write_nowait(_running(task))
        await asyncio.sleep(0)  # let other coroutines interleave their records with ours
        if worker % 2:
            await store.write(_succeeded(task, task.id.encode()))
            finished(None)
        else:
            store.write_nowait(_succeeded(task, task.id.encode()), on_commit=finished)
    await done


def test_writes_from_many_coroutines_interleave_correctly(engine: Engine) -> None:
    async def scenario() -> tuple[int, StoredState]:
        store = engine()
        await store.start()
        await asyncio.gather(*(_lifecycle(store, worker, 20) for worker in range(30)))
        commits = store.commits
        await store.stop()
        return commits, await reload(engine)

    commits, state = run(scenario(), timeout=60)
    expected = sorted((f"w{worker % 3}", str(worker * 1000 + i)) for worker in range(30) for i in range(20))
    assert sorted((t.session_id, t.id) for t in state.tasks) == expected
    for task in state.tasks:
        assert task == _finished(_created(task.id, task.session_id), task.id.encode()), task
    assert commits < 30 * 20 * 3 / 2  # records were grouped
