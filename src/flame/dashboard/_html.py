"""Small HTML helpers shared by the pages: escaping, the page frame, tables, bars and times."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from flame.types import format_memory

NAV = (
    ("/", "Overview"),
    ("/sessions", "Sessions"),
    ("/applications", "Applications"),
    ("/executors", "Executors"),
    ("/nodes", "Nodes"),
)
_BAR_STATES = ("succeed", "failed", "cancelled", "running", "pending")


def e(value: object) -> str:
    """Escape any value for HTML text or an attribute; None shows as a dash."""
    return "\u2013" if value is None else html.escape(str(value), quote=True)


def url(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


def link(href: str, text: object) -> str:
    return f'<a href="{e(href)}">{e(text)}</a>'


def when(ms: int | None) -> str:
    if ms is None:
        return "\u2013"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def size(n: int | None) -> str:
    if n is None:
        return "\u2013"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def memory(n: int) -> str:
    return format_memory(n) if n else "0"


def page(title: str, body: str, *, topic: str | None = None, active: str = "") -> str:
    nav = "".join(f'<a href="{href}"{" class=active" if name == active else ""}>{name}</a>' for href, name in NAV)
    topic_attr = f' data-topic="{e(topic)}"' if topic else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} \u00b7 Flame</title>"
        '<link rel=stylesheet href="/static/dashboard.css"></head>'
        f"<body{topic_attr}><header><span class=brand>Flame</span><nav>{nav}</nav>"
        '<span id=live class=live title="live updates">\u25cf</span></header>'
        f"<main><h1>{e(title)}</h1>{body}</main>"
        '<script src="/static/dashboard.js"></script></body></html>'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, body_id: str = "", empty: str = "none") -> str:
    """``rows`` hold cells that are already HTML (escape them with e())."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr class=empty><td colspan="{len(headers)}">{e(empty)}</td></tr>'
    tbody = f' id="{e(body_id)}"' if body_id else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody{tbody}>{body}</tbody></table>"


def bar(counts: dict[str, int], *, key: str = "") -> str:
    """A stacked progress bar of a session's task states (the script redraws it live)."""
    total = max(1, counts.get("total", 0))
    parts = "".join(
        f'<span class="seg {s}" style="width:{100 * counts.get(s, 0) / total:.2f}%"></span>' for s in _BAR_STATES
    )
    done = counts.get("succeed", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    label = f"{done}/{counts.get('total', 0)}"
    data = f' data-bar="{e(key)}"' if key else ""
    return f"<div class=bar{data}>{parts}<span class=label>{e(label)}</span></div>"


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are already HTML."""
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def live(key: str, value: object) -> str:
    """A value the script keeps current: ``key`` is a dotted path into the topic's payload."""
    return f'<span data-live="{e(key)}">{e(value)}</span>'


def chart(name: str, lines: str, label: str) -> str:
    return (
        f"<figure class=chart><figcaption>{e(label)}</figcaption>"
        f'<canvas data-chart="{e(name)}" data-lines="{e(lines)}" width=560 height=160></canvas></figure>'
    )


def error_page(status: int, title: str, message: str) -> str:
    body = f'<p class=error data-status="{status}">{e(message)}</p><p>{link("/", "Back to the overview")}</p>'
    return page(title, body)
