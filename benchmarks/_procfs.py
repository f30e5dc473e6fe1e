"""Processes as /proc shows them: a process tree, its CPU time by role across a phase, its PSS."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.5  # seconds between reads of the process tree during a phase

Labeler = Callable[[int, str], str]  # (depth in the tree, command line) -> role


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # start time in clock ticks after boot: with pid, names one process for good
    cpu: int  # utime + stime in clock ticks
    depth: int  # 0 for the root of the tree


def _stat(pid: int) -> tuple[int, int] | None:
    """(start time, utime + stime) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[19]), int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
    return found


def process_tree(root: int) -> list[Proc]:
    """``root`` and all its living descendants."""
    procs: list[Proc] = []
    todo = [(root, 0)]
    while todo:
        pid, depth = todo.pop()
        stat = _stat(pid)
        if stat is None:
            continue
        procs.append(Proc(pid, stat[0], stat[1], depth))
        todo += [(child, depth + 1) for child in _children(pid)]
    return procs


def cmdline(pid: int) -> str:
    """The command line of ``pid``, and its process name in brackets when the command line does
    not end with it (a warm-started service keeps its bootstrap's command line; its name says
    which service it became)."""
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
    return line if os.path.basename(line.split(" ", 1)[0]) == name else f"{line} [{name}]"


def pss_kb(pid: int) -> int:
    """The proportional set size of ``pid`` (from smaps_rollup) in kB; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class CpuMeter:
    """CPU time of a process tree and of this process across a phase, split by role.

    The tree is read at the start, every SAMPLE_INTERVAL seconds and at the end, so a process
    that starts or ends within the phase still counts for the part of it that was seen. The
    sampling thread's own CPU is left out of the client's figure.
    """

    def __init__(self, root: int, role: Labeler, include_root: bool = True) -> None:
        self.root = root
        self.role = role
        self.include_root = include_root
        self._first: dict[tuple[int, int], int] = {}
        self._last: dict[tuple[int, int], Proc] = {}
        self._roles: dict[tuple[int, int], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cpu-meter", daemon=True)
        self._sampler_cpu = 0.0
        self._client_start = 0.0
        self.client_cpu = 0.0  # seconds

    def _read(self) -> None:
        for proc in process_tree(self.root):
            if proc.depth == 0 and not self.include_root:
                continue
            key = (proc.pid, proc.start)
            if key not in self._roles:
                self._roles[key] = self.role(proc.depth, cmdline(proc.pid))
            seen = self._last.get(key)
            if seen is None or proc.cpu >= seen.cpu:  # CPU time only grows (an exiting process may read 0)
                self._last[key] = proc

    def _sample(self) -> None:
        began = time.thread_time()
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._read()
        self._sampler_cpu = time.thread_time() - began

    def __enter__(self) -> CpuMeter:
        self._read()
        self._first = {key: proc.cpu for key, proc in self._last.items()}
        self._client_start = time.process_time()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.client_cpu = time.process_time() - self._client_start - self._sampler_cpu
        self._read()

    def seconds_by_role(self) -> dict[str, float]:
        """CPU seconds per role in the phase (a process born in it counts from zero)."""
        ticks: dict[str, int] = {}
        for key, proc in self._last.items():
            role = self._roles[key]
            ticks[role] = ticks.get(role, 0) + proc.cpu - self._first.get(key, 0)
        seconds = {role: t / CLK_TCK for role, t in sorted(ticks.items())}
        seconds["client (this process)"] = self.client_cpu
        return seconds
