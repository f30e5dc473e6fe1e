"""Process-wide settings of the long-running server commands (not of the library: an embedding
program, or a test using ``flame.testing``, keeps its own)."""

from __future__ import annotations

import gc

# Container allocations between young-generation collections. CPython's default of 700 makes a
# session manager that moves 10,000 tasks a second collect every few hundred microseconds, and
# each older collection re-walks every task it holds: 10 us of CPU a task in a 20,000-task
# burst. Long-lived servers allocate in bursts and free by reference counting; cycles are rare.
YOUNG_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once start-up is done: move everything alive (modules, recovered state) out of the
    collector's sight, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(middle, 20), old)
