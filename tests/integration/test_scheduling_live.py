"""The elastic scheduler on a real local cluster with 8 executor slots (flmping tasks of 300-400 ms).

Everything is polled with deadlines: on a busy two-core machine a service takes a second or
more to start, so only what the scheduler guarantees is asserted, never how fast the machine is.
Measured times are printed (run with -s to see them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import replace

import pytest

import flame
from flame.apps.flmping import flmping_application_spec
from flame.testing import LocalCluster
from flame.types import ExecutorState
from tests.integration.conftest import wait_for

SLOTS = 8
APP = "flmping-elastic"
DELAY_RELEASE_S = 2
TASK = b'{"duration_ms": 400}'
SHORT_TASK = b'{"duration_ms": 300}'


@pytest.fixture(scope="module")
def conn() -> Iterator[flame.Connection]:
    # The node registers this machine's cpus (maybe 2); slots of no cpu let the node's 8 executor
    # slots, not its cpu count, be the limit.
    with LocalCluster(executors=SLOTS, cluster={"slot": "cpu=0,mem=64m"}) as cluster:
        connection = flame.connect(cluster.endpoint)
        connection.register_application(APP, replace(flmping_application_spec(), delay_release=DELAY_RELEASE_S))
        yield connection
        connection.close()


def held(conn: flame.Connection, states: tuple[ExecutorState, ...] = (ExecutorState.BOUND,)) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in conn.list_executors():
        if e.session_id and e.state in states:
            counts[e.session_id] = counts.get(e.session_id, 0) + 1
    return counts


def holding(conn: flame.Connection) -> dict[str, int]:
    """Executors binding or bound, per session."""
    return held(conn, (ExecutorState.BINDING, ExecutorState.BOUND))


def poll(condition: Callable[[], object], timeout: float) -> None:
    wait_for(condition, timeout, interval=0.1)


def timed(condition: Callable[[], object], timeout: float) -> float:
    began = time.monotonic()
    poll(condition, timeout)
    return time.monotonic() - began


def submit(session: flame.Session, count: int, task: bytes = TASK) -> list[Future[bytes]]:
    return [session.run(task) for _ in range(count)]


def quiet(conn: flame.Connection) -> None:
    """Wait until no executor serves a session (closed sessions' executors unbind once idle)."""
    busy = (ExecutorState.BINDING, ExecutorState.BOUND, ExecutorState.UNBINDING)
    poll(lambda: not [e for e in conn.list_executors() if e.state in busy], 30)


def test_scale_up_fair_share_and_priority(conn: flame.Connection) -> None:
    a = conn.create_session(APP)
    a_tasks = submit(a, 150)
    to_eight = timed(lambda: held(conn).get(a.id) == SLOTS, 30)
    print(f"\n0 -> {SLOTS} bound executors: {to_eight:.2f} s")

    b = conn.create_session(APP)
    b_tasks = submit(b, 150)
    to_fair = timed(lambda: held(conn).get(a.id) == held(conn).get(b.id) == SLOTS // 2, 30)
    print(f"a newcomer of equal priority at 4 of 8: {to_fair:.2f} s")
    for _ in range(10):  # and they stay there while both have a backlog
        shares = holding(conn)
        assert 3 <= shares.get(a.id, 0) <= 5 and 3 <= shares.get(b.id, 0) <= 5, shares
        time.sleep(0.2)

    high = conn.create_session(APP, priority=10)
    high_tasks = submit(high, 40)
    to_all = timed(lambda: holding(conn) == {high.id: SLOTS} and held(conn) == {high.id: SLOTS}, 30)
    print(f"a high-priority newcomer at 8 of 8: {to_all:.2f} s")
    done, _ = wait(high_tasks, 60)
    assert len(done) == len(high_tasks) and all(f.exception() is None for f in done)
    finished = [f for f in a_tasks + b_tasks if f.done()]
    assert finished and all(f.exception() is None for f in finished), "a preempted session's task failed"
    for session in (a, b, high):
        session.close()
    quiet(conn)


def test_min_instances_stay_bound_while_idle(conn: flame.Connection) -> None:
    session = conn.create_session(APP, min_instances=2)
    poll(lambda: held(conn).get(session.id) == 2, 30)
    deadline = time.monotonic() + DELAY_RELEASE_S + 1
    while time.monotonic() < deadline:  # past the delay: still 2, nothing more, nothing less
        assert holding(conn).get(session.id) == 2
        time.sleep(0.2)
    burst = submit(session, 16, SHORT_TASK)
    poll(lambda: holding(conn).get(session.id, 0) > 2, 30)
    wait(burst, 60)
    poll(lambda: holding(conn).get(session.id) == 2, DELAY_RELEASE_S + 15)
    session.close()
    quiet(conn)


def test_max_instances_is_never_exceeded(conn: flame.Connection) -> None:
    session = conn.create_session(APP, max_instances=3)
    tasks = submit(session, 30, SHORT_TASK)
    most = 0
    while not all(f.done() for f in tasks):
        most = max(most, holding(conn).get(session.id, 0))
        assert most <= 3
        time.sleep(0.1)
    assert most == 3
    assert all(f.exception() is None for f in tasks)
    session.close()
    quiet(conn)


def test_delay_release_keeps_executors_between_bursts_then_releases_them(conn: flame.Connection) -> None:
    session = conn.create_session(APP)
    wait(submit(session, 16, SHORT_TASK), 60)
    poll(lambda: held(conn).get(session.id) == SLOTS, 30)
    bound = {e.id for e in conn.list_executors() if e.session_id == session.id}
    for _ in range(3):  # bursts 1 s apart, within the 2 s delay: the same executors, never unbound
        time.sleep(1.0)
        assert {e.id for e in conn.list_executors() if e.session_id == session.id} == bound
        wait(submit(session, 16, SHORT_TASK), 60)
    last_done = time.monotonic()
    poll(lambda: session.id not in holding(conn), DELAY_RELEASE_S + 15)
    unbound_after = time.monotonic() - last_done
    print(f"\nunbound {unbound_after:.2f} s after the last task (delay_release {DELAY_RELEASE_S} s)")
    assert unbound_after >= DELAY_RELEASE_S - 0.5
    # unbound executors are released after the idle grace (5 s), not kept forever
    poll(lambda: not bound & {e.id for e in conn.list_executors()}, 20)
    session.close()
