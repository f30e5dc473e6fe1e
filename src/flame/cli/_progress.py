"""A one-line progress bar for a terminal: ``[#####-----]  512/1000  51%  4321 tasks/s  0.1 s``.

Drawn with a carriage return on the same line; only used when the stream is a TTY.
"""

from __future__ import annotations

import shutil
from typing import TextIO

_MIN_BAR = 10
_MAX_BAR = 40
_TEXT_WIDTH = 50  # room for the counters after the bar


class ProgressBar:
    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = max(total, 1)
        self._digits = len(str(total))
        columns = shutil.get_terminal_size((80, 24)).columns
        self._width = max(_MIN_BAR, min(_MAX_BAR, columns - _TEXT_WIDTH))
        self._drawn = False

    def line(self, done: int, elapsed: float) -> str:
        fraction = min(done / self._total, 1.0)
        filled = int(fraction * self._width)
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self._width - filled)
        return f"[{bar}]  {done:>{self._digits}}/{self._total}  {fraction:4.0%}  {rate:,.0f} tasks/s  {elapsed:.1f} s"

    def update(self, done: int, elapsed: float) -> None:
        self._stream.write(f"\r{self.line(done, elapsed)}\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar, leaving the cursor at the start of an empty line."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False
