"""Plain-text output of the client commands: aligned tables, field lists, times, sizes, durations.

No third-party formatting library: a table is a header row and rows of strings, columns padded to
their widest cell and separated by two spaces (the look of ``kubectl get`` and Flame's flmctl).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from flame.types import Event, ResourceRequirement

MISSING = "-"
_GAP = "  "
_MEMORY_UNITS = (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024))


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell; no trailing blanks; ends without a newline."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    padded = (_GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(line.rstrip() for line in padded)


def render_fields(fields: Sequence[tuple[str, str]]) -> str:
    """``Label:  value`` lines with the values aligned; a multi-line value is indented under its label."""
    width = max((len(label) for label, _ in fields), default=0) + 2
    lines: list[str] = []
    for label, value in fields:
        first, *rest = value.split("\n") if value else [""]
        lines.append(f"{label + ':':<{width}}{first}".rstrip())
        lines.extend(f"{'':<{width}}{line}".rstrip() for line in rest)
    return "\n".join(lines)


def render_json(value: Any) -> str:
    """The machine-readable form: indented, keys in the order the records define them."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def state_name(state: Enum) -> str:
    """``SessionState.OPEN`` -> ``Open``, ``NodeState.NOT_READY`` -> ``NotReady`` (Flame's spelling)."""
    return "".join(part.capitalize() for part in state.name.split("_"))


def format_time(ms: int | None, *, millis: bool = False) -> str:
    """Milliseconds since the epoch as local ``YYYY-MM-DD HH:MM:SS`` (``.mmm`` with ``millis``); unset: ``-``."""
    if not ms:
        return MISSING
    moment = datetime.fromtimestamp(ms / 1000)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ms % 1000:03d}" if millis else text


def iso_time(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 in UTC with milliseconds (for JSON); unset: None."""
    if not ms:
        return None
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{millis:03d}Z"


def format_memory(size: int) -> str:
    """Bytes as ``1g``, ``512m``, ``23.5g`` (binary units, the notation ``-r cpu=1,mem=1g`` accepts)."""
    for unit, factor in _MEMORY_UNITS:
        if size >= factor:
            whole, rest = divmod(size, factor)
            return f"{whole}{unit}" if rest == 0 else f"{size / factor:.1f}{unit}"
    return str(size)


def format_resreq(resreq: ResourceRequirement | None) -> str:
    if resreq is None:
        return MISSING
    text = f"cpu={resreq.cpu},mem={format_memory(resreq.memory)}"
    return f"{text},gpu={resreq.gpu}" if resreq.gpu else text


def format_duration_ms(ms: float | None) -> str:
    """``850 ms``, ``12.30 s``, ``5m 3s``, ``2h 1m``; unknown: ``-``."""
    if ms is None or ms < 0:
        return MISSING
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def format_size(size: int | None) -> str:
    """A payload size: ``0 B``, ``118 B``, ``1.5 KiB``, ``2.0 MiB``."""
    if size is None:
        return MISSING
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def format_optional(value: object) -> str:
    return MISSING if value is None or value == "" else str(value)


def format_events(events: Sequence[Event], label: Callable[[int], str | None] | None = None) -> str:
    """One line per event: local time with milliseconds, the code (and ``label(code)``), the message."""
    if not events:
        return "<none>"
    codes = []
    for event in events:
        name = label(event.code) if label is not None else None
        codes.append(f"{event.code} ({name})" if name else str(event.code))
    width = max(len(code) for code in codes)
    return "\n".join(
        f"{format_time(event.creation_time, millis=True)}  {code:<{width}}  {event.message or ''}".rstrip()
        for event, code in zip(events, codes, strict=True)
    )
