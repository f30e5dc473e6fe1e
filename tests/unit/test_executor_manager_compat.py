"""The TaskGroup stand-in used on Python 3.10 (tested here on whatever Python runs the tests)."""

from __future__ import annotations

import asyncio

import pytest

from flame.executor_manager._compat import FallbackTaskGroup


def test_waits_for_every_child() -> None:
    async def scenario() -> list[int]:
        done: list[int] = []

        async def child(n: int) -> None:
            await asyncio.sleep(0.01 * n)
            done.append(n)

        async with FallbackTaskGroup() as tg:
            for n in (3, 1, 2):
                tg.create_task(child(n))
        return done

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_a_failing_child_cancels_siblings_and_body() -> None:
    cancelled: list[str] = []

    async def scenario() -> None:
        async def sibling() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append("sibling")
                raise

        async def failing() -> None:
            await asyncio.sleep(0.01)
            raise ValueError("boom")

        async with FallbackTaskGroup() as tg:
            tg.create_task(sibling())
            tg.create_task(failing())
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append("body")
                raise

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(asyncio.wait_for(scenario(), 2))
    assert sorted(cancelled) == ["body", "sibling"]


def test_an_error_in_the_body_cancels_the_children() -> None:
    async def scenario() -> asyncio.Task[None]:
        child: asyncio.Task[None] | None = None
        with pytest.raises(KeyError):
            async with FallbackTaskGroup() as tg:
                child = tg.create_task(asyncio.sleep(10))
                raise KeyError("body")
        assert child is not None
        return child

    assert asyncio.run(asyncio.wait_for(scenario(), 2)).cancelled()


def test_a_child_cancelled_alone_affects_nobody() -> None:
    async def scenario() -> str:
        async with FallbackTaskGroup() as tg:
            lonely = tg.create_task(asyncio.sleep(10))
            other = tg.create_task(asyncio.sleep(0.01, result="kept"))
            lonely.cancel()
        return other.result()

    assert asyncio.run(asyncio.wait_for(scenario(), 2)) == "kept"


def test_outside_cancellation_propagates_and_cancels_children() -> None:
    async def scenario() -> None:
        children: list[asyncio.Task[None]] = []

        async def owner() -> None:
            async with FallbackTaskGroup() as tg:
                children.append(tg.create_task(asyncio.sleep(10)))
                await asyncio.sleep(10)

        task = asyncio.ensure_future(owner())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert children[0].cancelled()

    asyncio.run(asyncio.wait_for(scenario(), 2))
