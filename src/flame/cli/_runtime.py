"""Process-wide settings of the long-running server commands (not of the library: an embedding
program, or a test using ``flame.testing``, keeps its own)."""

from __future__ import annotations

import gc
import sys

# Container allocations between young-generation collections. CPython's default of 700 makes a
# session manager that moves 10,000 tasks a second collect every few hundred microseconds, and
# each older collection re-walks every task it holds: 10 us of CPU a task in a 20,000-task
# burst. Long-lived servers allocate in bursts and free by reference counting; cycles are rare.
YOUNG_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once start-up is done: move everything alive (modules, recovered state) out of the
    collector's sight, and collect the young generation less often. No collection first: it
    would cost start-up about 15 ms to find a few dozen unreachable objects."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(middle, 20), old)


def without_numpy() -> None:
    """Keep numpy out of a server process that hosts the object cache (unless already loaded).

    pyarrow imports numpy whenever it is installed, and it costs a process about 11 MB of PSS;
    the cache never needs it (numpy arrays reach it as bytes that only clients decode). pyarrow
    treats numpy as optional, so it works the same without.
    """
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]
