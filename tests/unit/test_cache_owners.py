"""The object cache's kept answers about session owners: a burst asks once, answers expire, the
number kept is bounded, and a failed question is shared by its waiters but never kept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from flame.errors import Unavailable
from flame.object_cache.owners import TTL, Answers, Verdict
from tests.integration.conftest import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Asker:
    """Counts its questions and answers ``verdict``."""

    def __init__(self, verdict: Verdict = Verdict.YOURS) -> None:
        self.verdict = verdict
        self.asked = 0

    def __call__(self) -> Verdict:
        self.asked += 1
        return self.verdict


def test_an_answer_is_kept_for_its_ttl_and_a_not_found_one_only_a_second() -> None:
    clock = Clock()
    answers = Answers(clock=clock)
    yours, absent = Asker(Verdict.YOURS), Asker(Verdict.ABSENT)
    assert answers.get(("alice", "s1"), yours, 1) is Verdict.YOURS
    assert answers.get(("alice", "s2"), absent, 1) is Verdict.ABSENT
    clock.now += TTL[Verdict.ABSENT] + 0.01  # the session may have been created since
    assert answers.get(("alice", "s1"), yours, 1) is Verdict.YOURS
    assert answers.get(("alice", "s2"), absent, 1) is Verdict.ABSENT
    assert (yours.asked, absent.asked) == (1, 2)
    clock.now += TTL[Verdict.YOURS]
    answers.get(("alice", "s1"), yours, 1)
    assert yours.asked == 2
    answers.forget()  # the cache's tokens were reloaded
    answers.get(("alice", "s1"), yours, 1)
    assert yours.asked == 3


def test_answers_are_per_credential_and_at_most_size_are_kept() -> None:
    answers = Answers(size=2, clock=Clock())
    asker = Asker()
    for key in (("alice", "s"), ("bob", "s"), ("alice", "s")):
        answers.get(key, asker, 1)
    assert asker.asked == 2  # alice's answer is not bob's
    answers.get(("carol", "s"), asker, 1)  # a third pushes out the oldest (bob's)
    answers.get(("alice", "s"), asker, 1)
    assert asker.asked == 3
    answers.get(("bob", "s"), asker, 1)
    assert asker.asked == 4


def test_a_burst_of_callers_asks_once() -> None:
    answers = Answers(clock=Clock())
    release = threading.Event()
    asked = []

    def ask() -> Verdict:
        asked.append(1)
        release.wait(10)
        return Verdict.ANOTHERS

    key = ("bob", "s")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(answers.get, key, ask, 10)]
        wait_for(lambda: asked, timeout=10)
        futures += [pool.submit(answers.get, key, ask, 10) for _ in range(7)]
        wait_for(lambda: answers.waiting(key) == 7, timeout=10)
        release.set()
        assert [f.result(10) for f in futures] == [Verdict.ANOTHERS] * 8
    assert len(asked) == 1


def test_a_failed_question_fails_its_waiters_too_and_is_asked_again_next_time() -> None:
    answers = Answers(clock=Clock())
    release = threading.Event()
    asked = []

    def unreachable() -> Verdict:
        asked.append(1)
        release.wait(10)
        raise Unavailable("could not ask the session manager at x")

    key = ("alice", "s")
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(answers.get, key, unreachable, 10)
        wait_for(lambda: asked, timeout=10)
        waiters = [pool.submit(answers.get, key, unreachable, 10) for _ in range(2)]
        wait_for(lambda: answers.waiting(key) == 2, timeout=10)
        release.set()
        for future in [first, *waiters]:
            with pytest.raises(Unavailable, match="could not ask the session manager at x"):
                future.result(10)
    assert answers.get(key, Asker(), 1) is Verdict.YOURS  # the failure was not kept


def test_a_waiter_gives_up_after_its_wait() -> None:
    answers = Answers(clock=Clock())
    release = threading.Event()
    started = threading.Event()

    def slow() -> Verdict:
        started.set()
        release.wait(10)
        return Verdict.YOURS

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(answers.get, "k", slow, 10)
        started.wait(10)
        with pytest.raises(Unavailable, match=r"no answer from the session manager within 0\.05 s"):
            answers.get("k", slow, 0.05)
        release.set()
        assert first.result(10) is Verdict.YOURS
