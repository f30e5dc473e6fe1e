"""What the durable engines, SQLite and PostgreSQL, promise beyond the shared behaviour.

A failed commit applies nothing and fails every write of its batch; an acknowledged write survives
the session manager being killed; a batch of 10,000 tasks commits quickly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from flame.errors import Internal
from flame.session_manager.storage import PutSession, PutTask, StoredState, open_storage
from flame.types import Task
from tests.integration.storage.samples import minimal_session, minimal_task, refuse_task_in_database, reload, run

# Most seconds one commit of 10,000 tasks may take (a loaded 2-core CI machine included).
TEN_THOUSAND_LIMIT = {"sqlite": 1.0, "postgres": 2.0}


@pytest.mark.parametrize("crowd", [0, 100], ids=["small-batch", "large-batch"])  # postgres: executemany, COPY
def test_failed_commit_applies_nothing_and_fails_every_waiter(durable_url: str, crowd: int) -> None:
    run(reload(lambda: open_storage(durable_url)))  # creates the schema
    refuse_task_in_database(durable_url, "boom")

    async def scenario() -> tuple[list[BaseException | None], StoredState]:
        store = open_storage(durable_url)
        await store.start()
        results = await asyncio.gather(
            store.write(PutSession(minimal_session())),
            store.write(PutTask(minimal_task())),
            store.write(PutTask(minimal_task(task_id="boom"))),
            store.write(*(PutTask(minimal_task(task_id=f"c{i}")) for i in range(crowd))),
            return_exceptions=True,
        )
        await store.write(PutTask(minimal_task(task_id="2")))  # the engine keeps working
        state = await store.load()
        await store.stop()
        return list(results), state

    results, state = run(scenario())
    results = results if crowd else results[:3]  # an empty write() returns at once
    for result in results:
        assert isinstance(result, Internal)
        assert "boom" in result.message and "nothing of the batch was written" in result.message
        assert result.__cause__ is not None
    assert results[0] is not results[1]
    assert state.sessions == [] and [t.id for t in state.tasks] == ["2"]


_CHILD = """
import asyncio, sys
from flame.session_manager.storage import PutSession, PutTask, open_storage
from flame.types import Session, SessionSpec, Task

async def main():
    store = open_storage(sys.argv[1])
    await store.start()
    await store.write(PutSession(Session(id="s", spec=SessionSpec(application="app"))))
    for start in range(0, 1_000_000, 25):
        ids = [str(n) for n in range(start, start + 25)]
        await asyncio.gather(*(store.write(PutTask(Task("s", i, input=i.encode()))) for i in ids))
        sys.stdout.write("ok " + " ".join(ids) + "\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


def test_acknowledged_writes_survive_sigkill(durable_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, durable_url],
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

    # A new engine, so a new connection (or file handle), sees every acknowledged task.
    state = run(reload(lambda: open_storage(durable_url)))
    stored = {task.id: task.input for task in state.tasks}
    missing = [i for i in acknowledged if stored.get(i) != i.encode()]
    assert not missing, f"{len(missing)} acknowledged tasks lost, e.g. {missing[:5]}"


def test_a_batch_of_10000_tasks_commits_quickly(durable_url: str) -> None:
    async def scenario() -> list[float]:
        store = open_storage(durable_url)
        await store.start()
        timings = []
        for session in ("new", "new", "other"):  # inserts, the same keys updated, inserts again
            records = [PutTask(Task(session, str(i), input=b"x" * 100, creation_time=i)) for i in range(10_000)]
            started = time.perf_counter()
            await store.write(*records)
            timings.append(time.perf_counter() - started)
        assert store.commits == 3
        await store.stop()
        return timings

    timings = run(scenario(), timeout=60)
    engine = "sqlite" if durable_url.startswith("sqlite://") else "postgres"
    print(f"{engine}: 10,000-task batches committed in {', '.join(f'{t * 1000:.0f}' for t in timings)} ms")
    assert max(timings) < TEN_THOUSAND_LIMIT[engine]
