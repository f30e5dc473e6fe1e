"""Warm interpreters: a service whose command is this Python starts in milliseconds, not tenths of a second.

A cold service start is an interpreter start plus the import of grpc and the SDK: ~0.2-0.3 s of CPU
before a session's first task can run. The pool keeps one interpreter per executor slot that has no
service, with those imports done (``flame.service._warm``); a launch it can run faithfully is handed
to one of them, which then becomes the service. Every other launch starts cold, as before.

So the node never holds more interpreters than it has slots: a slot's warm interpreter turns into
its service, and a stopped service's slot gets a new warm one in the background.

A launch runs warm only when a warm interpreter would run it exactly as its command does: the
command is this interpreter, found in this interpreter's own directory (a virtual environment's
python is another environment, even when it links to the same file), its arguments are
``-m module ...`` or ``script ...`` with no interpreter options, and nothing read while an
interpreter starts differs from this process's environment (``PYTHON*``, ``GRPC_*``, ``LD_*``,
``MALLOC_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flame.executor_manager.shims._launch import Launch

logger = logging.getLogger(__name__)

WARM_MAIN = "from flame.service._warm import main; main()"
READY = b"ready\n"  # what flame.service._warm prints once its imports are done
_STARTUP_PREFIXES = ("PYTHON", "GRPC_", "LD_", "MALLOC_")


@dataclass(frozen=True)
class WarmEntry:
    """What a warm interpreter runs as ``__main__``: a module (``-m``) or a script path."""

    kind: str  # "module" or "path"
    target: str
    args: tuple[str, ...]


def warm_entry(
    launch: Launch, program: str, *, python: str = sys.executable, own_env: Mapping[str, str] = os.environ
) -> WarmEntry | None:
    """How a warm interpreter would run ``launch`` (whose command resolved to ``program``), or
    None when only starting the command itself is faithful."""
    if not _same_interpreter(program, python):
        return None
    for name in set(launch.env) | set(own_env):
        if name.startswith(_STARTUP_PREFIXES) and launch.env.get(name) != own_env.get(name):
            return None
    if any(entry and not os.path.isabs(entry) for entry in own_env.get("PYTHONPATH", "").split(os.pathsep)):
        return None  # relative entries resolve against the directory the interpreter starts in
    args = launch.argv[1:]
    if len(args) >= 2 and args[0] == "-m" and args[1] and not args[1].startswith("-"):
        return WarmEntry("module", args[1], tuple(args[2:]))
    if args and args[0] and not args[0].startswith("-") and (launch.cwd / args[0]).is_file():
        return WarmEntry("path", args[0], tuple(args[1:]))
    return None


def _same_interpreter(program: str, python: str) -> bool:
    try:
        same_directory = os.path.dirname(os.path.abspath(program)) == os.path.dirname(os.path.abspath(python))
        return same_directory and os.path.samefile(program, python)
    except OSError:
        return False


class WarmPool:
    """``fill()`` once serving; ``acquire()`` / ``release()`` around every service of the node (warm
    or not); ``take()`` a warm interpreter for a launch; ``close()`` on shutdown."""

    def __init__(self, slots: int, *, cwd: Path, log_file: Path) -> None:
        self._slots = slots
        self._cwd = cwd
        self._log_file = log_file  # what warm interpreters write to stderr before they become services
        self._idle: deque[asyncio.subprocess.Process] = deque()
        self._in_use = 0
        self._closed = False
        self._refill: asyncio.Task[None] | None = None
        self._spawned = asyncio.Event()  # the first interpreter was started, or none will be
        # The one reader of each interpreter's stdout, by pid: it resolves the interpreter's ready
        # future, then reads on to the pipe's end (at become(), or death), so the pipe is closed
        # before the event loop is (reap() waits for it).
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self._ready: dict[int, asyncio.Future[bool]] = {}

    @classmethod
    def for_node(cls, slots: int, work_dir: Path) -> WarmPool:
        """The pool of a node with ``slots`` slots and this work dir: its interpreters start there,
        and what they write before they become services (import errors, say) goes to logs/warm.log."""
        return cls(slots, cwd=work_dir, log_file=work_dir / "logs" / "warm.log")

    @property
    def idle(self) -> int:
        """Warm interpreters waiting (some may still be importing)."""
        return len(self._idle)

    def fill(self) -> None:
        self._rebalance()

    async def first_started(self) -> None:
        """Until the first interpreter of :meth:`fill` is on its way (so a caller about to block the
        event loop, on imports say, lets it start first)."""
        if self._refill is not None and not self._refill.done():
            await self._spawned.wait()

    def acquire(self) -> None:
        """A service is starting: its slot needs no warm interpreter."""
        self._in_use += 1
        self._rebalance()

    def release(self) -> None:
        """A service has stopped: its slot gets a warm interpreter again."""
        self._in_use -= 1
        self._rebalance()

    def take(self) -> asyncio.subprocess.Process | None:
        """A live warm interpreter, or None when none is left."""
        while self._idle:
            process = self._idle.popleft()
            if process.returncode is None:
                return process
            logger.warning("a warm interpreter ended (return code %d) before it was needed", process.returncode)
        self._rebalance()
        return None

    async def launch(self, process: asyncio.subprocess.Process, entry: WarmEntry, launch: Launch, log: Path) -> bool:
        """Hand ``launch`` to ``process`` (from take()); False if it died before it could read it."""
        message = {
            "main": [entry.kind, entry.target],
            "args": list(entry.args),
            "env": launch.env,
            "cwd": str(launch.cwd),
            "log": str(log),
        }
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await self.reap(process)
            return False
        except BaseException:  # cancelled mid-launch: it belongs to no one now (the watcher reaps it)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        return True

    async def close(self) -> None:
        """Stop the idle interpreters and start no more. Idempotent."""
        self._closed = True
        refill, self._refill = self._refill, None
        if refill is not None:
            refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refill
        idle, self._idle = list(self._idle), deque()
        for process in idle:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for process in idle:
            await self.reap(process)

    async def reap(self, process: asyncio.subprocess.Process) -> None:
        """Wait for ``process`` (one of this pool's, killed or exiting) to end, and for the end of its
        pipes, so none outlives the event loop and complains when it is collected."""
        if process.stdin is not None:
            process.stdin.close()
        await process.wait()
        watcher = self._watchers.pop(process.pid, None)
        self._ready.pop(process.pid, None)
        if watcher is not None:
            await watcher  # its stdout ends with it

    # ---- keeping one per free slot ----

    def _rebalance(self) -> None:
        if self._closed or (self._refill is not None and not self._refill.done()):
            return
        if self._wanted() != len(self._idle):
            self._refill = asyncio.create_task(self._run_refill(), name="warm-interpreters")
            self._refill.add_done_callback(self._refill_ended)

    def _wanted(self) -> int:
        return max(0, self._slots - self._in_use)

    async def _run_refill(self) -> None:
        """Start or stop interpreters until there is one per free slot (rechecked after each)."""
        while not self._closed:
            wanted = self._wanted()
            if len(self._idle) > wanted:
                process = self._idle.pop()
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await self.reap(process)
            elif len(self._idle) < wanted:
                try:
                    process = await self._start()
                except OSError as exc:
                    logger.warning("cannot start a warm interpreter (services start cold): %s", exc)
                    return
                if self._closed:
                    process.kill()
                    await self.reap(process)
                    return
                self._idle.append(process)  # usable at once: it reads the launch once its imports are done
                self._spawned.set()
                # One at a time: the first is ready sooner, and the node's other work keeps a core.
                ready = await self._ready[process.pid]
                if not ready and process in self._idle:  # taken meanwhile, it was a service's to lose
                    logger.warning("a warm interpreter ended during its start-up (see %s)", self._log_file)
                    return
            else:
                return

    def _refill_ended(self, _: asyncio.Task[None]) -> None:
        self._spawned.set()

    async def _start(self) -> asyncio.subprocess.Process:
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log_file.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WARM_MAIN,
                str(os.getpid()),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # says when its imports are done (see _run_refill)
                stderr=log,
                cwd=self._cwd,
                start_new_session=True,
            )
        ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ready[process.pid] = ready
        self._watchers[process.pid] = asyncio.create_task(_watch(process, ready), name="warm-interpreter-stdout")
        return process


async def _watch(process: asyncio.subprocess.Process, ready: asyncio.Future[bool]) -> None:
    """Resolve ``ready`` with whether the interpreter said so, then read its stdout to the end."""
    assert process.stdout is not None
    try:
        line = await process.stdout.readline()
        if not ready.done():
            ready.set_result(line == READY)
        await process.stdout.read()
    finally:
        if not ready.done():
            ready.set_result(False)
