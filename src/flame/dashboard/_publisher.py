"""One in-process publisher behind every open dashboard page.

Twice a second it drains the metrics buffer, samples the cluster (one point a second into the
charts' history) and, for each topic somebody is watching, renders one JSON payload that every
watcher of that topic receives. Browsers never make the session manager do work per page: a
hundred open pages of one session cost one payload a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from flame.dashboard._metrics import Failure, Metrics
from flame.dashboard._state import ClusterState, SessionInfo

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.5
HISTORY_POINTS = 300  # one a second: the last five minutes
OVERVIEW = "overview"
SESSION_PREFIX = "session:"


@dataclass(frozen=True)
class Point:
    time: int  # ms
    finished: float  # tasks/s over the last second
    pending: int
    running: int = 0
    run_ms: float | None = None  # mean run time of the tasks finished in that second
    wait_ms: float | None = None


class Publisher:
    """start() / stop(); ``subscribe(topic)`` yields JSON payloads until the watcher goes away."""

    def __init__(self, state: ClusterState, metrics: Metrics, tick: float = TICK_SECONDS) -> None:
        self.state = state
        self.metrics = metrics
        self.tick_seconds = tick
        self.overview_history: deque[Point] = deque(maxlen=HISTORY_POINTS)
        self.session_history: dict[str, deque[Point]] = {}
        self._subscribers: defaultdict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._last_sample = time.monotonic()
        self._last_finished = metrics.finished_total
        self._last_done: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-publisher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queues in self._subscribers.values():
            for queue in queues:
                _offer(queue, "")  # an empty payload ends the stream
        self._subscribers.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                self.tick()
            except Exception:
                logger.exception("dashboard publisher tick failed; trying again at the next one")

    # ---- subscribers ------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> AsyncIterator[str]:
        """The topic's payload now, then at each tick (a slow reader skips to the latest)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._subscribers[topic].add(queue)
        try:
            yield self.render(topic)
            while True:
                payload = await queue.get()
                if not payload:
                    return
                yield payload
        finally:
            watchers = self._subscribers.get(topic)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._subscribers[topic]

    @property
    def watchers(self) -> int:
        return sum(len(q) for q in self._subscribers.values())

    # ---- sampling ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.metrics.cpu.run(self._tick)

    def _tick(self) -> None:
        self.ticks += 1
        self.metrics.drain()
        now = time.monotonic()
        if now - self._last_sample >= 1.0:
            self._sample(now - self._last_sample)
            self._last_sample = now
        for topic, queues in list(self._subscribers.items()):
            payload = self.render(topic)
            for queue in queues:
                _offer(queue, payload)

    def _sample(self, elapsed: float) -> None:
        stamp = int(time.time() * 1000)
        sessions = self.state.sessions()
        finished = self.metrics.finished_total
        pending = sum(s.counts.pending for s in sessions if s.open)
        running = sum(s.counts.running for s in sessions if s.open)
        self.overview_history.append(Point(stamp, (finished - self._last_finished) / elapsed, pending, running))
        self._last_finished = finished
        timings = self.metrics.take_timings()
        alive = set()
        for s in sessions:
            alive.add(s.id)
            done = s.counts.done
            before = self._last_done.get(s.id, done)
            self._last_done[s.id] = done
            history = self.session_history.get(s.id)
            if history is None:
                if not s.open and done == before:
                    continue  # a closed session that was already idle: nothing to chart
                history = self.session_history[s.id] = deque(maxlen=HISTORY_POINTS)
            timing = timings.get(s.id)
            run_ms = wait_ms = None
            if timing is not None and timing.finished:
                run_ms = 1000 * timing.run_seconds / timing.finished
                wait_ms = 1000 * timing.wait_seconds / timing.finished
            history.append(Point(stamp, (done - before) / elapsed, s.counts.pending, s.counts.running, run_ms, wait_ms))
        for gone in set(self._last_done) - alive:  # deleted sessions
            self.session_history.pop(gone, None)
            del self._last_done[gone]
            self.metrics.forget_session(gone)

    # ---- payloads ---------------------------------------------------------------------------

    def render(self, topic: str) -> str:
        if topic == OVERVIEW:
            return json.dumps(self.overview())
        if topic.startswith(SESSION_PREFIX):
            return json.dumps(self.session(topic[len(SESSION_PREFIX) :]))
        return json.dumps({"error": f"unknown topic {topic!r}"})

    def overview(self) -> dict[str, object]:
        state = self.state
        sessions = state.sessions(open_only=True)
        return {
            "time": int(time.time() * 1000),
            "nodes": [
                {
                    "name": n.name,
                    "state": n.state,
                    "cpu": [n.used.cpu, n.capacity.cpu],
                    "memory": [n.used.memory, n.capacity.memory],
                    "executors": n.executors,
                }
                for n in state.nodes()
            ],
            "executors": state.executor_counts(),
            "sessions": [_session_json(s) for s in sorted(sessions, key=lambda s: s.creation_time, reverse=True)],
            "series": _series(self.overview_history, ("finished", "pending")),
            "failures": [_failure_json(f) for f in reversed(self.metrics.failures)][:10],
        }

    def session(self, session_id: str) -> dict[str, object]:
        info = self.state.session(session_id)
        if info is None:
            return {"id": session_id, "gone": True}
        allocation = self.state.allocation(session_id)
        history = self.session_history.get(session_id, deque())
        return {
            "time": int(time.time() * 1000),
            "session": _session_json(info),
            "allocation": None
            if allocation is None
            else {
                "executors": allocation.executors,
                "share": None if allocation.share is None else round(allocation.share, 2),
                "limit": allocation.limit,
                "reason": allocation.reason,
            },
            "series": _series(history, ("finished", "pending", "running", "run_ms", "wait_ms")),
            "failures": [_failure_json(f) for f in reversed(self.metrics.session_failures.get(session_id, ()))][:20],
            "events": len(self.state.session_events(session_id)),
            "executors": [
                {"id": x.id, "node": x.node, "state": x.state, "inflight": x.inflight, "created": x.creation_time}
                for x in self.state.executors()
                if x.session_id == session_id
            ],
        }


def _offer(queue: asyncio.Queue[str], payload: str) -> None:
    """Replace whatever the watcher has not read yet with the latest payload."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(payload)


def _session_json(s: SessionInfo) -> dict[str, object]:
    return {
        "id": s.id,
        "application": s.application,
        "state": "Open" if s.open else "Closed",
        "counts": s.counts.as_dict(),
        "executors": s.executors,
    }


def _failure_json(f: Failure) -> dict[str, object]:
    return {"session": f.session_id, "task": f.task_id, "message": f.message, "time": f.time}


def _series(points: deque[Point], names: tuple[str, ...]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {"time": [p.time for p in points]}
    for name in names:
        values = [getattr(p, name) for p in points]
        out[name] = [None if v is None else round(v, 2) for v in values]
    return out
