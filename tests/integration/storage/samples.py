"""Objects with every field set (or none), and helpers to drive an engine from synchronous tests.

No pytest-asyncio: each test drives its coroutine with ``run()``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from flame.session_manager.storage import Storage, StoredState, open_storage
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
from tests.integration.storage import postgres

T = TypeVar("T")

#: Makes engines over one store: each call is a "restart" of the session manager.
Factory = Callable[[], Storage]


@dataclass
class Engine:
    """A Factory that also says which engine it makes and over which store."""

    kind: str  # "sqlite", "memory" or "postgres"
    url: str
    memory: Storage | None = None  # memory keeps its data in the object: every call returns this one

    def __call__(self) -> Storage:
        return self.memory if self.memory is not None else open_storage(self.url)


def refuse_task_in_database(url: str, task_id: str) -> None:
    """Make the database itself refuse to insert or update the task ``task_id``, as a full disk would."""
    if url.startswith("sqlite://"):
        db = sqlite3.connect(url.removeprefix("sqlite://"))
        for event in ("INSERT", "UPDATE"):
            db.execute(
                f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON tasks WHEN NEW.id = '{task_id}' "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        db.commit()
        db.close()
        return
    with postgres.admin(url) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF NEW.id = '{task_id}' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse()")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


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
