"""The dashboard's view of a controller and the metrics fed by its hook, without a network."""

from __future__ import annotations

import asyncio

from flame.dashboard._metrics import Buckets, Metrics
from flame.dashboard._publisher import Publisher
from flame.dashboard._state import ClusterState
from flame.session_manager.controller import Controller, ControllerSettings
from flame.session_manager.scheduler import Decision
from flame.session_manager.storage import MemoryStorage
from flame.types import ApplicationSpec, SessionSpec, TaskState


async def controller() -> Controller:
    storage = MemoryStorage("memory")
    await storage.start()
    c = Controller(storage, ControllerSettings())
    await c.recover()
    await c.register_application("app", ApplicationSpec(command="/bin/true", max_instances=3))
    return c


def test_counts_and_failures_follow_committed_changes() -> None:
    async def main() -> None:
        c = await controller()
        state = ClusterState(c)
        metrics = Metrics(state)
        state.on_tasks_committed(metrics.committed)
        await c.create_session("s1", SessionSpec(application="app"))
        await c.create_tasks("s1", [b"a"] * 5)
        await c.cancel_tasks("s1", ["1", "2"])
        metrics.drain()
        assert metrics._created == {"app": 5}
        assert metrics._finished == {("app", "cancelled"): 2}
        info = state.session("s1")
        assert info is not None and (info.counts.pending, info.counts.cancelled, info.counts.total) == (3, 2, 5)
        page, total = await state.tasks("s1", TaskState.CANCELLED, 0, 10)
        assert [t.id for t in page] == ["1", "2"] and total == 2
        assert await state.task("s1", "9") is None and state.session("nope") is None
        # Closing cancels the rest; a deleted session is forgotten by the publisher.
        await c.close_session("s1")
        metrics.drain()
        assert metrics._finished == {("app", "cancelled"): 5} and metrics.finished_total == 5
        publisher = Publisher(state, metrics)
        publisher._sample(1.0)
        await c.delete_session("s1")
        publisher._sample(1.0)
        assert "s1" not in publisher._last_done and "s1" not in metrics._created_seen

    asyncio.run(asyncio.wait_for(main(), 20))


def test_allocation_says_why_a_session_has_no_more_executors() -> None:
    async def main() -> None:
        c = await controller()
        state = ClusterState(c)
        await c.create_session("s1", SessionSpec(application="app", max_instances=5))
        allocation = state.allocation("s1")
        assert allocation is not None and allocation.limit == 3  # the application's max is smaller
        assert "no backlog" in allocation.reason
        await c.create_tasks("s1", [b""] * 4)
        assert "on their way" in state.allocation("s1").reason  # type: ignore[union-attr]
        state.scheduled(Decision(unplaceable={"s1": "no node has cpu=1,mem=1g free"}))
        assert state.allocation("s1").reason == "no node has cpu=1,mem=1g free"  # type: ignore[union-attr]
        await c.close_session("s1")
        assert state.allocation("s1").reason == "the session is closed"  # type: ignore[union-attr]

    asyncio.run(asyncio.wait_for(main(), 20))


def test_buckets_are_cumulative() -> None:
    buckets = Buckets((0.01, 0.1, 1))
    for value in (0.005, 0.01, 0.05, 2.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.01", 2.0), ("0.1", 3.0), ("1", 3.0), ("+Inf", 4.0)]
    assert buckets.sum == 2.065
