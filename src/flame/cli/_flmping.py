"""``flmping``: run N tasks of the built-in flmping application and report how they went.

Without -p it prints one row per task (where it ran and for how long); with -p it prints a
benchmark summary (and a progress bar while it runs, when stderr is a terminal). The session is
closed at the end, and on Ctrl-C too (exit code 130). ``flame ping`` is the same command.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from flame.apps import FLMPING_APPLICATION
from flame.apps import FLMPING_MAX_DURATION_MS as MAX_DURATION_MS
from flame.cli._progress import ProgressBar
from flame.cli._records import task_duration_ms
from flame.cli._shared import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliParser,
    add_client_flags,
    add_output_flag,
    configure_logging,
    connect_from,
    priority_flag,
    resreq_flag,
    run_handler,
)
from flame.cli._tables import MISSING, format_duration_ms, render_json, render_table, state_name
from flame.errors import FlameError, NotFound
from flame.types import SessionState, Task, TaskState

if TYPE_CHECKING:
    from flame.client import Session

RESULT_HEADERS = ("Task", "State", "Host", "PID", "Executor", "Duration", "Message")
_REDRAW_SECONDS = 0.1
CLOSE_WAIT = 10.0  # seconds an interrupted run waits for the cluster to close its session
_RULE = "=" * 60
EXAMPLES = ["", "-t 100 -d 50", "-p -t 10000", "-t 20 -P 5 -r cpu=1,mem=1g", "-t 10 -o json"]


def _task_count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of tasks >= 1, got {text!r}")
    return int(text)


def _duration(text: str) -> int:
    if not text.strip().isdigit() or int(text) > MAX_DURATION_MS:
        raise argparse.ArgumentTypeError(f"expected milliseconds from 0 to {MAX_DURATION_MS}, got {text!r}")
    return int(text)


def add_ping_arguments(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    parser.add_argument(
        "-t", "--task-num", type=_task_count, default=10, metavar="N", help="tasks to run (default: 10)"
    )
    parser.add_argument("-c", "--common-data", metavar="TEXT", help="common data of the session")
    parser.add_argument("-d", "--duration", type=_duration, default=0, metavar="MS", help="each task sleeps MS ms")
    parser.add_argument("-p", "--perf", action="store_true", help="benchmark mode: a summary, no per-task rows")
    parser.add_argument("-P", "--priority", type=priority_flag, default=0, help="session priority (default: 0)")
    parser.add_argument("-r", "--resreq", type=resreq_flag, metavar="RESREQ", help="cpu=N,mem=SIZE[,gpu=N]")
    add_output_flag(parser)
    add_client_flags(parser, top_level=top_level)
    parser.set_defaults(handler=ping)


def describe(prog: str) -> tuple[str, str]:
    """The description and the epilog (examples) of the command, for ``flmping`` and ``flame ping``."""
    lines = "\n".join(f"  {prog} {example}".rstrip() for example in EXAMPLES)
    description = (
        "Run tasks of the built-in flmping application to check that a Flame cluster works\n"
        "and how fast; each task sleeps -d MS and reports its host, process and executor."
    )
    epilog = (
        f"examples:\n{lines}\n\n"
        "exit status: 0 when every task succeeded, 1 otherwise, 130 on Ctrl-C or SIGTERM\n"
        "(the session is closed first)."
    )
    return description, epilog


@dataclass
class _Outcome:
    elapsed: float
    succeeded: int
    failed: int


class _Counter:
    """Counts finished futures (called on the client's event-loop thread) and says when all are."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._all_done = threading.Event()
        if total == 0:
            self._all_done.set()

    def finished(self, _: concurrent.futures.Future[bytes]) -> None:
        with self._lock:
            self.done += 1
            if self.done >= self.total:
                self._all_done.set()

    def wait(self, timeout: float) -> bool:
        return self._all_done.wait(timeout)


def _run_tasks(session: Session, args: argparse.Namespace) -> _Outcome:
    """Submit every task at once, wait for all of them (drawing the progress bar), count outcomes."""
    data = json.dumps({"duration_ms": args.duration}).encode()
    counter = _Counter(args.task_num)
    bar = ProgressBar(sys.stderr, args.task_num) if args.perf and sys.stderr.isatty() else None
    started = time.monotonic()
    futures = [session.run(data) for _ in range(args.task_num)]
    for future in futures:
        future.add_done_callback(counter.finished)
    try:
        while not counter.wait(_REDRAW_SECONDS):
            if bar is not None:
                bar.update(counter.done, time.monotonic() - started)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - started
    failed = sum(1 for f in futures if f.exception() is not None)
    return _Outcome(elapsed, len(futures) - failed, failed)


def _summary(outcome: _Outcome) -> dict[str, Any]:
    total = outcome.succeeded + outcome.failed
    throughput = outcome.succeeded / outcome.elapsed if outcome.elapsed > 0 else 0.0
    return {
        "tasks": total,
        "succeeded": outcome.succeeded,
        "failed": outcome.failed,
        "duration_s": round(outcome.elapsed, 3),
        "throughput": round(throughput, 2),
    }


def _summary_text(summary: dict[str, Any]) -> str:
    return "\n".join(
        [
            _RULE,
            "BENCHMARK RESULTS",
            _RULE,
            f"Duration:        {summary['duration_s']:.2f}s",
            f"Succeeded:       {summary['succeeded']}/{summary['tasks']}",
            f"Failed:          {summary['failed']}",
            f"Throughput:      {summary['throughput']:.2f} tasks/sec",
            _RULE,
        ]
    )


def _task_result(task: Task) -> dict[str, Any]:
    """One row of the per-task report: where the task ran (from flmping's output) and how long."""
    reply: dict[str, Any] = {}
    if task.state == TaskState.SUCCEED and task.output:
        try:
            parsed = json.loads(task.output)
            reply = parsed if isinstance(parsed, dict) else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            reply = {}
    message = None
    if task.state != TaskState.SUCCEED:
        final = [e.message for e in task.events if e.code == task.state and e.message]
        message = final[-1] if final else None
    return {
        "task": task.id,
        "state": state_name(task.state),
        "host": reply.get("host"),
        "pid": reply.get("pid"),
        "executor": reply.get("executor"),
        "duration_ms": task_duration_ms(task),
        "message": message,
    }


def _results_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per task; the Message column only when some task failed or was cancelled."""

    def cell(value: Any) -> str:
        return MISSING if value is None else str(value)

    with_message = any(r["message"] for r in results)
    headers = RESULT_HEADERS if with_message else RESULT_HEADERS[:-1]
    rows = []
    for r in results:
        row = [r["task"], r["state"], cell(r["host"]), cell(r["pid"]), cell(r["executor"])]
        row.append(format_duration_ms(r["duration_ms"]))
        rows.append([*row, cell(r["message"])] if with_message else row)
    return render_table(headers, rows)


def _task_order(task: Task) -> tuple[int, str]:
    return (int(task.id), task.id) if task.id.isdigit() else (sys.maxsize, task.id)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM (e.g. from `timeout`) end the run as Ctrl-C does, so the session is closed first."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _close_after_interrupt(session: Session, prog: str) -> None:
    """Close the session on the cluster without waiting for the results of its running tasks.

    Session.close() waits (up to 30 s) for the results of tasks still running; it runs on a helper
    thread here, and we stop waiting once the cluster has the session closed. Disconnecting then
    ends the rest of that wait.
    """
    print(f"{prog}: interrupted; closing session {session.id}", file=sys.stderr, flush=True)
    errors: list[FlameError] = []

    def close() -> None:
        try:
            session.close()
        except FlameError as exc:
            errors.append(exc)
        except BaseException:  # cancelled by the disconnect that ends the wait
            pass

    closer = threading.Thread(target=close, name="flmping-close", daemon=True)
    closer.start()
    deadline = time.monotonic() + CLOSE_WAIT
    try:
        while closer.is_alive() and session.state != SessionState.CLOSED and time.monotonic() < deadline:
            closer.join(_REDRAW_SECONDS)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted again; session {session.id} may still be open", file=sys.stderr)
        return
    if errors:
        print(f"{prog}: could not close session {session.id}: {errors[0].message}", file=sys.stderr)
    elif session.state != SessionState.CLOSED:
        print(f"{prog}: session {session.id} was not closed within {CLOSE_WAIT:g} s", file=sys.stderr)


def ping(args: argparse.Namespace, prog: str) -> int:
    """Run the tasks in a new flmping session, report, close the session."""
    common_data = args.common_data.encode() if args.common_data is not None else None
    with _sigterm_interrupts(), connect_from(args) as conn:
        started = time.monotonic()
        try:
            session = conn.create_session(FLMPING_APPLICATION, common_data, priority=args.priority, resreq=args.resreq)
        except NotFound as exc:
            raise NotFound(
                f"{exc.message}; `flame up` registers the built-in flmping application, or register it on this "
                "cluster with command ${FLAME_PYTHON} (or a python with flame installed) and arguments "
                "[-m, flame.apps.flmping]"
            ) from exc
        try:
            if args.output == "table":
                created_ms = (time.monotonic() - started) * 1000
                print(
                    f"Session <{session.id}> was created in <{created_ms:.0f} ms>, "
                    f"start to run <{args.task_num}> tasks in the session:\n",
                    flush=True,
                )
            outcome = _run_tasks(session, args)
            tasks = [] if args.perf else sorted(session.list_tasks(), key=_task_order)
            session.close()
        except KeyboardInterrupt:
            _close_after_interrupt(session, prog)
            return EXIT_INTERRUPTED
    _report(args, session.id, outcome, tasks)
    if outcome.failed:
        viewer = "flame" if prog == "flame" else "flmctl"
        print(
            f"{prog}: {outcome.failed} of {args.task_num} tasks failed; "
            f"`{viewer} view -s {session.id} -t TASK` shows why",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _report(args: argparse.Namespace, session_id: str, outcome: _Outcome, tasks: Sequence[Task]) -> None:
    summary = _summary(outcome)
    results = [_task_result(t) for t in tasks]
    if args.output == "json":
        report: dict[str, Any] = {"session": session_id, "summary": summary}
        if not args.perf:
            report["tasks"] = results
        print(render_json(report))
    elif args.perf:
        print(_summary_text(summary))
    else:
        print(_results_table(results))
        print(
            f"\n<{summary['tasks']}> tasks were completed in <{outcome.elapsed * 1000:.0f} ms>: "
            f"{outcome.succeeded} succeeded, {outcome.failed} failed."
        )


def build_parser() -> CliParser:
    description, epilog = describe("flmping")
    parser = CliParser(prog="flmping", description=description, epilog=epilog)
    add_ping_arguments(parser, top_level=True)
    return parser


def flmping_main(argv: Sequence[str] | None = None) -> int:
    """The ``flmping`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging()
    return run_handler(args.handler, args, "flmping")
