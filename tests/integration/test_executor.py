"""flame.Executor against a real cluster: the concurrent.futures contract, common data, errors, state."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flame
from flame.testing import LocalCluster
from tests.integration.conftest import free_port, wait_for

THIS_MODULE = sys.modules[__name__]


@pytest.fixture(scope="module")
def pool(cluster: LocalCluster) -> Iterator[flame.Executor]:
    with flame.Executor(
        max_workers=2, endpoint=cluster.endpoint, cache_endpoint=cluster.cache_endpoint, pickle_by_value=[THIS_MODULE]
    ) as executor:
        yield executor


def square(x: int) -> int:
    return x * x


def slow_identity(x: int, delay: float) -> int:
    time.sleep(delay)
    return x


def fails(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


class Unpicklable(Exception):
    def __init__(self, lock: Any) -> None:
        super().__init__("holds a lock")
        self.lock = lock


def raises_unpicklable() -> None:
    import threading

    raise Unpicklable(threading.Lock())


class Counter:
    def __init__(self, start: int) -> None:
        self.value = start
        self.pid = os.getpid()

    def add(self, n: int) -> tuple[int, int]:
        self.value += n
        return self.value, os.getpid()


class Loaded:
    """A common object that notes, in a file, each process that unpickles it."""

    def __init__(self, log: str, payload: str) -> None:
        self.log, self.payload = log, payload

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as log:
            log.write(f"{os.getpid()}\n")


def read_common(_: int) -> tuple[int, str]:
    return os.getpid(), flame.common().payload


def test_map_over_10000_items_keeps_input_order(pool: flame.Executor) -> None:
    assert list(pool.map(square, range(10_000))) == [x * x for x in range(10_000)]
    assert list(pool.map(pow, range(100), [2] * 100, chunksize=7)) == [x**2 for x in range(100)]
    assert list(pool.map(lambda x, y: x - y, [5, 6], [1, 1])) == [4, 5]


def test_submit_and_as_completed(pool: flame.Executor) -> None:
    futures = {pool.submit(slow_identity, i, 0.01 * (i % 3)): i for i in range(30)}
    seen = {future.result(): futures[future] for future in concurrent.futures.as_completed(futures, timeout=60)}
    assert seen == {i: i for i in range(30)}
    assert pool.submit(square, x=12).result(30) == 144


def test_pending_futures_can_be_cancelled(cluster: LocalCluster, tmp_path: Path) -> None:
    with flame.Executor(max_workers=1, endpoint=cluster.endpoint, pickle_by_value=[THIS_MODULE]) as executor:
        session = executor.session
        first = executor.submit(slow_identity, -1, 2.0)
        queued = [executor.submit(slow_identity, i, 0.0) for i in range(10)]

        def queued_in_cluster() -> bool:
            session.refresh()
            return session.pending + session.running == 11

        wait_for(queued_in_cluster, timeout=30)
        cancelled = [future.cancel() for future in queued[5:]]
        assert cancelled == [True] * 5
        assert first.result(60) == -1
        assert [f.result(60) for f in queued[:5]] == list(range(5))
        assert all(f.cancelled() for f in queued[5:])

        def cancelled_in_cluster() -> bool:
            session.refresh()
            return (session.cancelled, session.succeed, session.pending) == (5, 6, 0)

        wait_for(cancelled_in_cluster, timeout=30)


def test_shutdown_cancel_futures_cancels_what_has_not_run(cluster: LocalCluster) -> None:
    executor = flame.Executor(max_workers=1, endpoint=cluster.endpoint, pickle_by_value=[THIS_MODULE])
    running = executor.submit(slow_identity, 0, 1.0)
    waiting = [executor.submit(slow_identity, i, 0.0) for i in range(1, 20)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert running.done()
    assert all(f.done() for f in waiting)
    assert any(f.cancelled() for f in waiting)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 2)
    assert executor.session.closed


def test_common_is_loaded_once_per_executor(cluster: LocalCluster, tmp_path: Path) -> None:
    log = tmp_path / "loads.txt"
    common = Loaded(str(log), "market data")
    with flame.Executor(
        max_workers=2, endpoint=cluster.endpoint, common=common, pickle_by_value=[THIS_MODULE]
    ) as executor:
        results = list(executor.map(read_common, range(400)))
    assert {payload for _, payload in results} == {"market data"}
    workers = {str(pid) for pid, _ in results}
    loads = log.read_text().split()
    # Once per executor: no process loaded it twice, and every one that ran calls had loaded it
    # (an executor bound while the other had already taken every call loads it and runs none).
    assert len(loads) == len(set(loads)) <= 2 and workers <= set(loads), (loads, workers)


def test_large_common_object_and_arguments_go_through_the_cache(cluster: LocalCluster, tmp_path: Path) -> None:
    log = tmp_path / "loads.txt"
    big = Loaded(str(log), "x" * 3_000_000)
    with flame.Executor(
        max_workers=2,
        endpoint=cluster.endpoint,
        cache_endpoint=cluster.cache_endpoint,
        common=big,
        pickle_by_value=[THIS_MODULE],
    ) as executor:
        session = executor.session
        assert len(session.common_data() or b"") < 10_000  # an ObjectRef, not 3 MB
        results = list(executor.map(read_common, range(50)))
        assert executor.submit(len, b"y" * 2_000_000).result(60) == 2_000_000
        cached = flame.client.cache_client(cluster.cache_endpoint).list_objects(f"flmfunc/{session.id}")
        assert len(cached) == 2  # the common object and the large argument
    assert {len(payload) for _, payload in results} == {3_000_000}
    assert sorted(log.read_text().split()) == sorted({str(pid) for pid, _ in results})


def test_remote_exception_comes_back_with_its_traceback(pool: flame.Executor) -> None:
    future = pool.submit(fails, 3)
    error = future.exception(60)
    assert isinstance(error, ValueError) and str(error) == "bad item 3"
    assert isinstance(error.__cause__, flame.RemoteTraceback)
    remote = str(error.__cause__)
    assert "Remote traceback" in remote and "in fails" in remote and "ValueError: bad item 3" in remote
    results = pool.map(fails, range(6))
    assert [next(results), next(results), next(results)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad item 3"):
        next(results)


def test_exception_that_cannot_be_pickled_is_a_remote_error(pool: flame.Executor) -> None:
    with pytest.raises(flame.RemoteError) as failure:
        pool.submit(raises_unpicklable).result(60)
    assert failure.value.type_name == "Unpicklable"
    assert "holds a lock" in failure.value.message
    assert "raises_unpicklable" in failure.value.remote_traceback


def test_module_missing_on_the_worker_is_named_with_how_to_ship_it(pool: flame.Executor) -> None:
    # free_port lives in tests.integration.conftest, which is importable here but not on the workers.
    with pytest.raises(ModuleNotFoundError) as failure:
        pool.submit(free_port).result(60)
    message = str(failure.value)
    assert failure.value.name is not None and failure.value.name.startswith("tests")
    assert "the worker cannot import module 'tests" in message
    assert "pickle_by_value=['tests']" in message
    assert "this client imports it from" in message


def test_stateful_object_calls_run_in_order_on_one_binding(pool: flame.Executor) -> None:
    counter = pool.stateful(Counter, 100)
    futures = [counter.add(1) for _ in range(50)]
    results = [f.result(60) for f in futures]
    assert [value for value, _ in results] == list(range(101, 151))
    assert len({pid for _, pid in results}) == 1
    assert counter.add(-150).result(60)[0] == 0
    counter.close()


def test_bad_arguments_are_refused(cluster: LocalCluster, pool: flame.Executor) -> None:
    with pytest.raises(flame.InvalidArgument, match="max_workers must be"):
        flame.Executor(max_workers=0, endpoint=cluster.endpoint)
    with pytest.raises(flame.InvalidArgument, match="chunksize must be"):
        pool.map(square, [1], chunksize=0)
    with pytest.raises(TypeError, match="not callable"):
        pool.submit(42)  # type: ignore[arg-type]
    with pytest.raises(flame.InvalidArgument, match="cannot be pickled"):
        pool.submit(square, _unpicklable_generator())
    with pytest.raises(flame.NotFound):
        flame.Executor("no-such-app", endpoint=cluster.endpoint)
    with pytest.raises(flame.FlameError, match=r"flame.common\(\) works only inside"):
        flame.common()


def _unpicklable_generator() -> Iterator[int]:
    yield 1
