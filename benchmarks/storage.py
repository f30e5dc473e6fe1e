"""Storage engines on the task hot path: create 100,000 tasks, then finish them.

For each engine (SQLite in a temporary file, memory) and each way of recording a finished task,
measured in the same run:
- ``update``: the narrow ``UpdateTask`` (state, output, attempts, completion time, one event);
- ``put`` (the baseline): the full-row ``PutTask`` the session manager wrote before it existed.
Tasks are created with PutTask in batches of --batch (each write() awaited), then finished one
write_nowait() per task with an on_commit callback, yielding to the event loop every --batch
tasks, as the session manager's hot path does. Printed per phase: records/s, and CPU
microseconds per record spent on the event loop thread (time.thread_time) and in the engine's
writer thread (its per-thread CPU clock), medians of --repeat runs.

Usage: python benchmarks/storage.py [--tasks 100000] [--batch 1000] [--repeat 3]
Run it alone: flock /tmp/flame-bench.lock python benchmarks/storage.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flame.session_manager.storage import PutSession, PutTask, Storage, UpdateTask, open_storage
from flame.types import Event, Session, SessionSpec, Task, TaskState


@dataclass
class Phase:
    records: int
    wall: float  # seconds
    loop_cpu: float  # seconds of the event loop thread
    writer_cpu: float  # seconds of the writer thread

    @property
    def rate(self) -> float:
        return self.records / self.wall

    @property
    def loop_us(self) -> float:
        return self.loop_cpu / self.records * 1e6

    @property
    def writer_us(self) -> float:
        return self.writer_cpu / self.records * 1e6


class Clock:
    """Wall time and the CPU time of the loop thread and of the store's writer thread."""

    def __init__(self, writer: threading.Thread | None) -> None:
        self._writer = None if writer is None or writer.ident is None else time.pthread_getcpuclockid(writer.ident)

    def _writer_cpu(self) -> float:
        return 0.0 if self._writer is None else time.clock_gettime(self._writer)

    def start(self) -> None:
        self._wall, self._loop, self._thread = time.perf_counter(), time.thread_time(), self._writer_cpu()

    def stop(self, records: int) -> Phase:
        return Phase(
            records,
            time.perf_counter() - self._wall,
            time.thread_time() - self._loop,
            self._writer_cpu() - self._thread,
        )


async def create(store: Storage, tasks: list[Task], batch: int) -> None:
    for start in range(0, len(tasks), batch):
        await store.write(*(PutTask(task) for task in tasks[start : start + batch]))


def finish_event(task: Task, output: bytes) -> Event:
    """What the session manager does to a live task that succeeded, before recording it."""
    event = Event(int(TaskState.SUCCEED), "task succeeded", task.creation_time + 1)
    task.state, task.output, task.attempts = TaskState.SUCCEED, output, 1
    task.completion_time = event.creation_time
    task.events.append(event)
    return event


async def finish(store: Storage | None, tasks: list[Task], batch: int, narrow: bool) -> None:
    """Finish every task as the hot path does: change the live task, write one record for it.

    With no store, only the change: the caller's own share of the loop CPU.
    """
    committed = 0

    def on_commit(error: BaseException | None) -> None:
        nonlocal committed
        if error is not None:
            raise error
        committed += 1

    output = b"o" * 16
    for n, task in enumerate(tasks, 1):
        event = finish_event(task, output)
        if store is None:
            on_commit(None)
        else:
            store.write_nowait(UpdateTask.of(task, event) if narrow else PutTask(task), on_commit=on_commit)
        if n % batch == 0:
            await asyncio.sleep(0)  # the session manager's loop has other work between results
    if store is not None:
        await store.flush()
    assert committed == len(tasks), f"{len(tasks) - committed} finish records were not committed"


async def measure(open_store: Callable[[], Storage], count: int, batch: int, narrow: bool) -> tuple[Phase, Phase]:
    store = open_store()
    await store.start()
    try:
        await store.write(PutSession(Session(id="bench", spec=SessionSpec(application="bench"))))
        tasks = new_tasks(count)
        clock = Clock(store.writer_thread)
        clock.start()
        await create(store, tasks, batch)
        created = clock.stop(count)
        clock.start()
        await finish(store, tasks, batch, narrow)
        finished = clock.stop(count)
        state = await store.load()
        assert all(t.state == TaskState.SUCCEED and len(t.events) == 2 for t in state.tasks), "wrong stored state"
        return created, finished
    finally:
        await store.stop()


def new_tasks(count: int) -> list[Task]:
    tasks = [Task("bench", str(n), input=b"i" * 16, creation_time=n) for n in range(1, count + 1)]
    for task in tasks:
        task.events.append(Event(int(TaskState.PENDING), "task created", task.creation_time))
    return tasks


async def measure_caller(count: int, batch: int) -> Phase:
    tasks = new_tasks(count)
    clock = Clock(None)
    clock.start()
    await finish(None, tasks, batch, narrow=True)
    return clock.stop(count)


def median_phase(phases: list[Phase]) -> Phase:
    return Phase(
        phases[0].records,
        statistics.median(p.wall for p in phases),
        statistics.median(p.loop_cpu for p in phases),
        statistics.median(p.writer_cpu for p in phases),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per run (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per create batch and per turn (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; medians are printed (default 3)")
    args = parser.parse_args()
    if args.tasks < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--tasks, --batch and --repeat must be at least 1")

    with tempfile.TemporaryDirectory(prefix="flame-storage-bench-") as tmp:
        runs = 0

        def sqlite() -> Storage:
            nonlocal runs
            runs += 1
            return open_storage(f"sqlite://{Path(tmp) / f'run{runs}.db'}")

        engines: dict[str, Callable[[], Storage]] = {"sqlite": sqlite, "memory": lambda: open_storage("memory")}
        print(f"{args.tasks:,} tasks, batches of {args.batch:,}, median of {args.repeat} runs")
        header = f"{'engine':8} {'finish':7} {'phase':7} {'records/s':>11} {'loop us/rec':>12} {'writer us/rec':>14}"
        print(header)
        print("-" * len(header))
        for name, open_store in engines.items():
            results: dict[str, tuple[Phase, Phase]] = {}
            for mode in ("put", "update"):  # the baseline first
                narrow = mode == "update"
                samples = [asyncio.run(measure(open_store, args.tasks, args.batch, narrow)) for _ in range(args.repeat)]
                results[mode] = (median_phase([s[0] for s in samples]), median_phase([s[1] for s in samples]))
                for phase_name, phase in zip(("create", "finish"), results[mode], strict=True):
                    rates = f"{phase.rate:11,.0f} {phase.loop_us:12.2f} {phase.writer_us:14.2f}"
                    print(f"{name:8} {mode:7} {phase_name:7} {rates}")
            put, update = results["put"][1], results["update"][1]
            writer = f", writer CPU /{put.writer_us / update.writer_us:.2f}" if update.writer_us else ""
            print(
                f"{name:8} finish, update vs put: throughput x{update.rate / put.rate:.2f}, "
                f"loop CPU /{put.loop_us / update.loop_us:.2f}{writer}"
            )
        caller = median_phase([asyncio.run(measure_caller(args.tasks, args.batch)) for _ in range(args.repeat)])
        print(
            f"of the finish phase's loop CPU, {caller.loop_us:.2f} us/rec is the caller's own work "
            "(changing the task, making its event), measured with no store"
        )


if __name__ == "__main__":
    main()
