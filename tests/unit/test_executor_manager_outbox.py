"""The agent's outgoing queue: batching, ordering, heartbeats, unsent messages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flame.executor_manager._outbox import Item, Outbox, pack, unpack
from flame.protocol import backend_pb2, types_pb2


def report(executor_id: str, state: Any = types_pb2.ExecutorIdle) -> backend_pb2.ExecutorReport:
    return backend_pb2.ExecutorReport(executor_id=executor_id, state=state)


def outcome(task_id: str) -> backend_pb2.TaskOutcome:
    return backend_pb2.TaskOutcome(executor_id="e1", session_id="s1", task_id=task_id, state=types_pb2.Succeed)


def shape(messages: list[backend_pb2.AgentMessage]) -> list[tuple[list[str], list[str]]]:
    return [([r.executor_id for r in m.executors], [o.task_id for o in m.outcomes]) for m in messages]


def test_outcomes_share_one_message() -> None:
    assert shape(pack([outcome(str(i)) for i in range(50)])) == [([], [str(i) for i in range(50)])]


def test_a_report_after_an_outcome_starts_a_new_message() -> None:
    # Within a message, reports happened before outcomes: Bound, tasks, then Idle must not merge.
    items: list[Item] = [report("a"), report("b"), outcome("1"), outcome("2"), report("c"), outcome("3")]
    messages = pack(items)
    assert shape(messages) == [(["a", "b"], ["1", "2"]), (["c"], ["3"])]
    assert unpack(messages) == items


def test_take_returns_everything_ready_and_a_lone_heartbeat_only_when_idle() -> None:
    box = Outbox()
    box.request_heartbeat()
    assert [m.heartbeat for m in box.take()] == [True]
    box.request_heartbeat()
    box.put(outcome("1"))
    assert shape(box.take()) == [([], ["1"])]
    assert box.take() == []


def test_unsent_messages_go_back_in_front() -> None:
    box = Outbox()
    box.put(report("a"))
    box.put(outcome("1"))
    unsent = box.take()
    box.put(outcome("2"))
    box.give_back(unsent)
    assert shape(box.take()) == [(["a"], ["1", "2"])]


def test_only_urgent_items_cut_a_batch_window_short() -> None:
    async def scenario() -> None:
        box = Outbox()
        box.put(outcome("1"), urgent=False)
        assert not box.urgent
        began = time.monotonic()
        await box.wait_urgent(0.05)  # nothing urgent: waits the whole window
        assert time.monotonic() - began >= 0.04
        waiting = asyncio.ensure_future(box.wait_urgent(5))
        await asyncio.sleep(0)
        assert not waiting.done()
        box.put(report("a"))  # reports are urgent by default
        await asyncio.wait_for(waiting, 1)
        box.take()
        assert not box.urgent

    asyncio.run(scenario())


def test_wait_wakes_on_items_and_on_close() -> None:
    async def scenario() -> None:
        box = Outbox()
        waiting = asyncio.ensure_future(box.wait())
        await asyncio.sleep(0)
        assert not waiting.done()
        box.put(report("a"))
        await asyncio.wait_for(waiting, 1)
        box.take()
        box.close()
        await asyncio.wait_for(box.wait(), 1)
        assert box.closed

    asyncio.run(scenario())
