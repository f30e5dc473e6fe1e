"""The session manager's Prometheus metrics (prometheus_client, exposed at ``/metrics``).

Per-task cost on the hot path is one list append per committed batch (``committed``): the
tasks are classified and their timings put in buckets when the publisher drains the buffer,
a few times a second, or when ``/metrics`` is scraped. Gauges (executors, nodes, backlogs)
are read from the cluster state at scrape time, so they are exact then.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from flame.dashboard._state import ClusterState, state_name
from flame.types import NodeState, Task, TaskState

P = ParamSpec("P")
T = TypeVar("T")
# Seconds: tasks of a millisecond up to jobs of minutes.
TASK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
TOP_SESSIONS = 10  # sessions with their own pending/running series; the rest are summed per application
COMMIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
RECENT_FAILURES = 50
_READY = state_name(NodeState.READY)
_OUTCOMES = {TaskState.SUCCEED: "succeed", TaskState.FAILED: "failed", TaskState.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class Failure:
    session_id: str
    task_id: str
    message: str
    time: int  # ms


class CpuAccount:
    """Time the event loop spent in the dashboard's own code, so that it can report its cost.

    Wall-clock time of synchronous sections (no await inside them): an upper bound of their CPU
    time, read at a tenth of the cost of the thread's CPU clock (a system call in a VM).
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


class Buckets:
    """A cumulative-bucket histogram without locks: observed from the event loop only."""

    def __init__(self, bounds: tuple[float, ...] = TASK_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total = 0
        out = []
        for bound, count in zip((*(str(b) for b in self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out


@dataclass
class SessionTiming:
    """Sums over the tasks of one session finished since the publisher last looked."""

    finished: int = 0
    run_seconds: float = 0.0
    wait_seconds: float = 0.0


class Metrics:
    """The registry behind ``/metrics`` and the task timings the dashboard charts."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=True)
        self._buffer: list[tuple[str, str, list[Task]]] = []
        self._finished: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._run: defaultdict[str, Buckets] = defaultdict(Buckets)
        self._wait: defaultdict[str, Buckets] = defaultdict(Buckets)
        self._created: defaultdict[str, int] = defaultdict(int)
        self._created_seen: dict[str, int] = {}
        self.timings: defaultdict[str, SessionTiming] = defaultdict(SessionTiming)
        self.failures: deque[Failure] = deque(maxlen=RECENT_FAILURES)
        self.session_failures: defaultdict[str, deque[Failure]] = defaultdict(lambda: deque(maxlen=RECENT_FAILURES))
        self.finished_total = 0
        self.cpu = CpuAccount()
        self.scheduler_seconds = Histogram(
            "flame_scheduler_cycle_seconds",
            "Time one scheduling cycle (snapshot, plan, apply) took.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.scheduler_actions = Counter(
            "flame_scheduler_actions",
            "Executor actions the scheduler decided, by kind.",
            ["action"],
            registry=self.registry,
        )
        # Per committed batch: lock-free buckets like the task histograms.
        self.commit_seconds = Buckets(COMMIT_BUCKETS)
        self.commit_records = Buckets(BATCH_BUCKETS)
        self.grpc_calls = Counter(
            "flame_grpc_calls",
            "gRPC calls served, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.registry.register(_ClusterCollector(self))
        for sid, _app, created in state.created_counts():  # tasks recovered from storage are not new
            self._created_seen[sid] = created

    # ---- inputs -----------------------------------------------------------------------------

    def committed(self, application: str, session_id: str, tasks: list[Task]) -> None:
        """The controller's hook: keep the final ones for the next drain."""
        started = time.perf_counter()
        final = [t for t in tasks if t.state >= TaskState.SUCCEED]
        if final:
            self._buffer.append((application, session_id, final))
        self.cpu.seconds += time.perf_counter() - started

    def scheduled(self, actions: Iterable[object], seconds: float) -> None:
        self.cpu.run(self._scheduled, actions, seconds)

    def _scheduled(self, actions: Iterable[object], seconds: float) -> None:
        self.scheduler_seconds.observe(seconds)
        for action in actions:
            self.scheduler_actions.labels(type(action).__name__.removesuffix("Executor").lower()).inc()

    def storage_committed(self, records: int, seconds: float) -> None:
        started = time.perf_counter()
        self.commit_seconds.observe(seconds)
        self.commit_records.observe(records)
        self.cpu.seconds += time.perf_counter() - started

    # ---- aggregation ------------------------------------------------------------------------

    def drain(self) -> None:
        """Count and time the tasks finished since the last drain; count tasks created."""
        buffer, self._buffer = self._buffer, []
        for application, session_id, tasks in buffer:
            self._drain_batch(application, session_id, tasks)
        for sid, app, created in self.state.created_counts():
            before = self._created_seen.get(sid, 0)
            if created != before:
                self._created[app] += created - before
                self._created_seen[sid] = created

    def _drain_batch(self, application: str, session_id: str, tasks: list[Task]) -> None:
        # The tight loop of the metrics: locals, and bucket counts updated in place.
        run, wait = self._run[application], self._wait[application]
        run_counts, wait_counts, bounds = run.counts, wait.counts, run.bounds
        outcomes = [0, 0, 0, 0, 0]
        run_total = wait_total = 0.0
        running = TaskState.RUNNING
        for task in tasks:
            outcomes[task.state] += 1
            events = task.events
            # Usually [created, running, final]; after retries, the first and last starts differ.
            first = last = None
            for event in events:
                if event.code == running:
                    last = event.creation_time
                    if first is None:
                        first = last
            if last is None or first is None or task.completion_time is None:
                continue
            run_s = max(0, task.completion_time - last) / 1000
            wait_s = max(0, first - task.creation_time) / 1000
            run_counts[bisect.bisect_left(bounds, run_s)] += 1
            wait_counts[bisect.bisect_left(bounds, wait_s)] += 1
            run_total += run_s
            wait_total += wait_s
        run.sum += run_total
        wait.sum += wait_total
        timing = self.timings[session_id]
        timing.finished += len(tasks)
        timing.run_seconds += run_total
        timing.wait_seconds += wait_total
        for state, outcome in _OUTCOMES.items():
            if outcomes[state]:
                self._finished[(application, outcome)] += outcomes[state]
        if outcomes[TaskState.FAILED]:
            for task in tasks:
                if task.state == TaskState.FAILED:
                    message = (task.events[-1].message if task.events else None) or ""
                    failure = Failure(session_id, task.id, message, _ms())
                    self.failures.append(failure)
                    self.session_failures[session_id].append(failure)
        self.finished_total += len(tasks)

    def take_timings(self) -> dict[str, SessionTiming]:
        timings, self.timings = self.timings, defaultdict(SessionTiming)
        return dict(timings)

    def forget_session(self, session_id: str) -> None:
        self._created_seen.pop(session_id, None)
        self.session_failures.pop(session_id, None)

    def exposition(self) -> bytes:
        return self.cpu.run(self._exposition)

    def _exposition(self) -> bytes:
        self.drain()
        return generate_latest(self.registry)


def _ms() -> int:
    return int(time.time() * 1000)


class _ClusterCollector(Collector):
    """Series computed at scrape time from the cluster state and the drained task counts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        state = m.state
        created = CounterMetricFamily("flame_tasks_created", "Tasks created, by application.", labels=["application"])
        for app, n in sorted(m._created.items()):
            created.add_metric([app], n)
        yield created
        finished = CounterMetricFamily(
            "flame_tasks_finished",
            "Tasks that reached a final state, by application and outcome.",
            labels=["application", "outcome"],
        )
        for (app, outcome), n in sorted(m._finished.items()):
            finished.add_metric([app, outcome], n)
        yield finished
        yield from _histograms("flame_task_run_seconds", "Time a task ran on its executor (latest attempt).", m._run)
        yield from _histograms(
            "flame_task_queue_wait_seconds", "Time from a task's creation to its first start.", m._wait
        )
        yield from _backlogs(state)
        executors = GaugeMetricFamily("flame_executors", "Executors, by state.", labels=["state"])
        for name, n in state.executor_counts().items():
            executors.add_metric([name], n)
        yield executors
        yield from _nodes(state)
        commits = HistogramMetricFamily("flame_storage_commit_seconds", "Time one storage batch took to commit.")
        commits.add_metric([], m.commit_seconds.cumulative(), m.commit_seconds.sum)
        yield commits
        records = HistogramMetricFamily(
            "flame_storage_batch_records", "Records in one committed storage batch (group commit)."
        )
        records.add_metric([], m.commit_records.cumulative(), m.commit_records.sum)
        yield records
        cpu = CounterMetricFamily(
            "flame_dashboard_cpu_seconds", "CPU time the dashboard and these metrics took from the session manager."
        )
        cpu.add_metric([], m.cpu.seconds)
        yield cpu


def _histograms(name: str, doc: str, by_app: dict[str, Buckets]) -> Iterator[Metric]:
    family = HistogramMetricFamily(name, doc, labels=["application"])
    for app, buckets in sorted(by_app.items()):
        family.add_metric([app], buckets.cumulative(), buckets.sum)
    yield family


def _backlogs(state: ClusterState) -> Iterator[Metric]:
    sessions = state.sessions(open_only=True)
    per_app = GaugeMetricFamily(
        "flame_application_tasks",
        "Pending and running tasks of open sessions, by application.",
        labels=["application", "state"],
    )
    totals: defaultdict[tuple[str, str], int] = defaultdict(int)
    for s in sessions:
        totals[(s.application, "pending")] += s.counts.pending
        totals[(s.application, "running")] += s.counts.running
    for (app, name), n in sorted(totals.items()):
        per_app.add_metric([app, name], n)
    yield per_app
    top = sorted(sessions, key=lambda s: s.counts.pending + s.counts.running, reverse=True)[:TOP_SESSIONS]
    per_session = GaugeMetricFamily(
        "flame_session_tasks",
        f"Pending and running tasks of the {TOP_SESSIONS} open sessions with the largest backlog.",
        labels=["session", "application", "state"],
    )
    for s in top:
        per_session.add_metric([s.id, s.application, "pending"], s.counts.pending)
        per_session.add_metric([s.id, s.application, "running"], s.counts.running)
    yield per_session
    open_sessions = GaugeMetricFamily("flame_open_sessions", "Open sessions.")
    open_sessions.add_metric([], len(sessions))
    yield open_sessions


def _nodes(state: ClusterState) -> Iterator[Metric]:
    capacity = GaugeMetricFamily(
        "flame_node_capacity", "What a node offers (cpu cores, memory bytes, gpus).", labels=["node", "resource"]
    )
    used = GaugeMetricFamily(
        "flame_node_used", "What a node's executors hold (cpu cores, memory bytes, gpus).", labels=["node", "resource"]
    )
    ready = GaugeMetricFamily("flame_node_ready", "1 when the node is Ready.", labels=["node"])
    for node in state.nodes():
        for resource in ("cpu", "memory", "gpu"):
            capacity.add_metric([node.name, resource], getattr(node.capacity, resource))
            used.add_metric([node.name, resource], getattr(node.used, resource))
        ready.add_metric([node.name], 1 if node.state == _READY else 0)
    yield capacity
    yield used
    yield ready
