"""The dashboard's pages, rendered on the server from the cluster state's views.

Each function returns the page's HTML or raises PageNotFound. Values that change while a page
is open carry ``data-live``/``data-bar``/``data-chart`` attributes; dashboard.js keeps them
current from the publisher's server-sent events.
"""

from __future__ import annotations

from flame.dashboard._html import bar, chart, e, fields, link, live, memory, page, size, table, url, when
from flame.dashboard._metrics import Failure
from flame.dashboard._publisher import OVERVIEW, SESSION_PREFIX, Publisher
from flame.dashboard._state import (
    TASK_STATES,
    ClusterState,
    ExecutorInfo,
    SessionInfo,
    TaskInfo,
    parse_task_state,
    state_name,
)
from flame.types import TaskState, now_ms

PAGE_SIZE = 25
LOG_TAIL_BYTES = 16 * 1024


class PageNotFound(Exception):
    """The page names a session, task, executor, node or application that does not exist."""


def _session_row(s: SessionInfo) -> list[str]:
    counts = s.counts.as_dict()
    return [
        link(url("sessions", s.id), s.id),
        link(url("applications", s.application), s.application),
        e("Open" if s.open else "Closed"),
        bar(counts),
        e(s.counts.pending),
        e(s.counts.running),
        e(s.counts.succeed),
        e(s.counts.failed),
        e(s.executors),
    ]


_SESSION_HEADERS = (
    "session",
    "application",
    "state",
    "progress",
    "pending",
    "running",
    "succeed",
    "failed",
    "executors",
)


def _failure_rows(failures: list[Failure]) -> list[list[str]]:
    return [
        [
            e(when(f.time)),
            link(url("sessions", f.session_id), f.session_id),
            link(url("sessions", f.session_id, "tasks", f.task_id), f.task_id),
            f"<span class=message>{e(f.message)}</span>",
        ]
        for f in failures
    ]


def _failure_table(failures: list[Failure]) -> str:
    rows = _failure_rows(failures)
    return table(("time", "session", "task", "message"), rows, body_id="failures", empty="no failed task")


def overview(state: ClusterState, publisher: Publisher) -> str:
    nodes = [
        [
            link(url("nodes", n.name), n.name),
            e(n.state),
            f"{e(n.used.cpu)} / {e(n.capacity.cpu)}",
            f"{e(memory(n.used.memory))} / {e(memory(n.capacity.memory))}",
            e(n.executors),
        ]
        for n in state.nodes()
    ]
    executors = "".join(
        f'<li><span class=state>{e(name)}</span> <b data-live="executors.{e(name)}">{n}</b></li>'
        for name, n in state.executor_counts().items()
    )
    sessions = sorted(state.sessions(open_only=True), key=lambda s: s.creation_time, reverse=True)
    failures = list(reversed(publisher.metrics.failures))[:10]
    apps = " \u00b7 ".join(link(url("applications", a.name), a.name) for a in state.applications()) or "none registered"
    node_table = table(("node", "state", "cpu used", "memory used", "executors"), nodes, body_id="nodes")
    session_table = table(
        _SESSION_HEADERS, (_session_row(s) for s in sessions), body_id="sessions", empty="no open session"
    )
    body = (
        "<section class=cards>"
        f"<div class=card><h2>Nodes</h2>{node_table}</div>"
        f"<div class=card><h2>Executors</h2><ul class=counts id=executor-states>{executors}</ul>"
        f"<h2>Applications</h2><p id=applications>{apps}</p></div>"
        "</section>"
        "<section class=cards>"
        f"<div class=card>{chart('series', 'finished', 'tasks finished per second')}</div>"
        f"<div class=card>{chart('series', 'pending', 'tasks pending')}</div>"
        "</section>"
        f"<h2>Open sessions</h2>{session_table}"
        f"<h2>Recent failures</h2>{_failure_table(failures)}"
    )
    return page("Overview", body, topic=OVERVIEW, active="Overview")


def sessions(state: ClusterState) -> str:
    rows = (_session_row(s) for s in sorted(state.sessions(), key=lambda s: s.creation_time, reverse=True))
    return page("Sessions", table(_SESSION_HEADERS, rows, empty="no session"), active="Sessions")


TaskListing = tuple[list[TaskInfo], int | None]


def task_query(query: dict[str, str]) -> tuple[TaskState | None, bool, int]:
    """The task list's filter, whether it is a known state, and its page number."""
    wanted = query.get("state", "")
    task_state = parse_task_state(wanted) if wanted else None
    return task_state, not wanted or task_state is not None, _page_number(query.get("page", "1"))


def session(
    state: ClusterState, publisher: Publisher, session_id: str, query: dict[str, str], listing: TaskListing
) -> str:
    info = state.session(session_id)
    allocation = state.allocation(session_id)
    if info is None or allocation is None:
        raise PageNotFound(f"session {session_id!r} does not exist")
    counts = info.counts.as_dict()
    progress = "".join(
        f'<li class={name}><span class=state>{name}</span> <b data-live="session.counts.{name}">{counts[name]}</b></li>'
        for name in ("pending", "running", "succeed", "failed", "cancelled", "total")
    )
    limit = "none" if allocation.limit is None else allocation.limit
    share = "\u2013" if allocation.share is None else f"{allocation.share:.2f}"
    scheduler = fields(
        [
            ("executors held", live("allocation.executors", allocation.executors)),
            ("fair share", live("allocation.share", share)),
            ("priority", e(info.priority)),
            ("weight", e(f"{info.weight:g}")),
            ("min / max instances", f"{e(info.min_instances)} / {e(limit)}"),
            ("why not more", f"<span class=reason>{live('allocation.reason', allocation.reason)}</span>"),
        ]
    )
    executors = [_executor_row(x)[:3] + _executor_row(x)[5:] for x in state.executors() if x.session_id == session_id]
    events = [[e(when(ev.creation_time)), e(ev.code), e(ev.message)] for ev in state.session_events(session_id)]
    failures = list(reversed(publisher.metrics.session_failures.get(session_id, ())))[:20]
    headers = ("executor", "node", "state", "tasks held", "created")
    executor_table = table(headers, executors, body_id="executors", empty="no executor")
    body = (
        f"<p class=sub>application {link(url('applications', info.application), info.application)} \u00b7 "
        f"<span data-live=session.state>{'Open' if info.open else 'Closed'}</span>"
        f" \u00b7 created {e(when(info.creation_time))}</p>"
        f'{bar(counts, key="session.counts")}<ul class="counts progress">{progress}</ul>'
        "<section class=cards>"
        f"<div class=card>{chart('series', 'finished', 'tasks finished per second')}</div>"
        f"<div class=card>{chart('series', 'run_ms,wait_ms', 'mean run time and queue wait (ms)')}</div>"
        "</section>"
        "<section class=cards>"
        f"<div class=card><h2>Scheduler</h2>{scheduler}</div>"
        f"<div class=card><h2>Executors bound</h2>{executor_table}</div>"
        "</section>"
        f"<h2>Failures</h2>{_failure_table(failures)}"
        f"<h2>Events</h2>{table(('time', 'code', 'message'), events, empty='no event')}"
        f"<h2 id=tasks>Tasks</h2>{_task_list(query, listing)}"
    )
    return page(f"Session {session_id}", body, topic=SESSION_PREFIX + session_id, active="Sessions")


def _task_list(query: dict[str, str], listing: TaskListing) -> str:
    wanted = query.get("state", "")
    task_state, known, page_no = task_query(query)
    if not known:
        note = f"<p class=error>unknown state {e(wanted)}: accepted {e(', '.join(TASK_STATES))}</p>"
        tasks: list[TaskInfo] = []
        total: int | None = 0
    else:
        note = ""
        tasks, total = listing
    links = []
    for name in ("All", *TASK_STATES):
        href = "?#tasks" if name == "All" else f"?state={name}#tasks"
        chosen = (name == "All" and not wanted) or (task_state is not None and name == state_name(task_state))
        links.append(f'<a href="{href}"{" class=active" if chosen else ""}>{name}</a>')
    filters = " ".join(links)
    rows = [
        [
            link(url("sessions", t.session_id, "tasks", t.id), t.id),
            e(t.state),
            e(t.attempts),
            e(when(t.creation_time)),
            e(when(t.completion_time)),
            f"<span class=message>{e(t.message)}</span>",
        ]
        for t in tasks
    ]
    pages = max(1, -(-(total or 0) // PAGE_SIZE))
    state_arg = f"state={e(wanted)}&" if wanted else ""
    pager = f"page {page_no} of {pages} ({total} tasks)"
    if page_no > 1:
        pager = f'<a href="?{state_arg}page={page_no - 1}#tasks">\u2190 previous</a> {pager}'
    if page_no < pages:
        pager = f'{pager} <a href="?{state_arg}page={page_no + 1}#tasks">next \u2192</a>'
    headers = ("task", "state", "attempts", "created", "finished", "last message")
    stamp = f"<p class=sub>as the page was loaded ({e(when(now_ms()))} UTC); reload for the latest</p>"
    return (
        f"<p class=filters>{filters}</p>{note}{stamp}{table(headers, rows, empty='no task')}<p class=pager>{pager}</p>"
    )


def _page_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        return 1
    return max(1, min(number, 10**9))


def task(state: ClusterState, session_id: str, task_id: str, info: TaskInfo | None, log_tail: str | None) -> str:
    if state.session(session_id) is None:
        raise PageNotFound(f"session {session_id!r} does not exist")
    if info is None:
        raise PageNotFound(f"task {task_id!r} does not exist in session {session_id!r}")
    executor = link(url("executors", info.executor), info.executor) if info.executor else e(None)
    details = fields(
        [
            ("session", link(url("sessions", session_id), session_id)),
            ("state", f"<span class=state>{e(info.state)}</span>"),
            ("attempts", e(info.attempts)),
            ("input", e(size(info.input_size))),
            ("output", e(size(info.output_size))),
            ("created", e(when(info.creation_time))),
            ("finished", e(when(info.completion_time))),
            ("executor", executor),
        ]
    )
    events = [
        [e(when(ev.creation_time)), e(_task_event(ev.code)), f"<span class=message>{e(ev.message)}</span>"]
        for ev in info.events
    ]
    body = (
        f"<div class=card>{details}</div>"
        f"<h2>Events</h2>{table(('time', 'code', 'message'), events, body_id='events', empty='no event')}"
        f"<h2>Executor log (tail)</h2>{_log(log_tail)}"
    )
    return page(f"Task {session_id}/{task_id}", body, active="Sessions")


def _task_event(code: int) -> str:
    """A task event's code is the state it entered."""
    return f"{code} ({TASK_STATES[code]})" if 0 <= code < len(TASK_STATES) else str(code)


def _log(tail: str | None) -> str:
    if tail is None:
        return "<p class=sub>no log file on this machine for that executor</p>"
    return f"<pre class=log>{e(tail)}</pre>"


_EXECUTOR_HEADERS = ("executor", "node", "state", "session", "application", "tasks held", "created")


def _executor_row(x: ExecutorInfo) -> list[str]:
    return [
        link(url("executors", x.id), x.id),
        link(url("nodes", x.node), x.node),
        e(x.state),
        link(url("sessions", x.session_id), x.session_id) if x.session_id else e(None),
        e(x.application),
        e(x.inflight),
        e(when(x.creation_time)),
    ]


def executors(state: ClusterState) -> str:
    rows = [_executor_row(x) for x in state.executors()]
    return page("Executors", table(_EXECUTOR_HEADERS, rows, empty="no executor"), active="Executors")


def executor(state: ClusterState, executor_id: str, log_tail: str | None) -> str:
    info = state.executor(executor_id)
    if info is None:
        if state.log_file(executor_id) is None:
            raise PageNotFound(f"executor {executor_id!r} does not exist")
        body = f"<p class=sub>executor {e(executor_id)} was released</p><h2>Log (tail)</h2>{_log(log_tail)}"
        return page(f"Executor {executor_id}", body, active="Executors")
    body = (
        f"{table(_EXECUTOR_HEADERS, [_executor_row(info)])}"
        f"<p class=sub>log file {e(info.log_file)}</p><h2>Log (tail)</h2>{_log(log_tail)}"
    )
    return page(f"Executor {executor_id}", body, active="Executors")


def nodes(state: ClusterState, name: str | None = None) -> str:
    infos = state.nodes()
    if name is not None:
        infos = [n for n in infos if n.name == name]
        if not infos:
            raise PageNotFound(f"node {name!r} is not registered")
    rows = [
        [
            link(url("nodes", n.name), n.name),
            e(n.state),
            f"{e(n.used.cpu)} / {e(n.capacity.cpu)}",
            f"{e(memory(n.used.memory))} / {e(memory(n.capacity.memory))}",
            f"{e(n.used.gpu)} / {e(n.capacity.gpu)}",
            f"{e(n.executors)} / {e(n.max_executors or 'any')}",
            e(when(n.last_heartbeat_time)),
        ]
        for n in infos
    ]
    headers = ("node", "state", "cpu", "memory", "gpu", "executors", "last heartbeat")
    body = table(headers, rows, empty="no node registered")
    if name is not None:
        executors = [_executor_row(x) for x in state.executors() if x.node == name]
        body += f"<h2>Executors</h2>{table(_EXECUTOR_HEADERS, executors, empty='no executor')}"
    return page("Nodes" if name is None else f"Node {name}", body, active="Nodes")


def applications(state: ClusterState, name: str | None = None) -> str:
    apps = state.applications()
    if name is not None:
        apps = [a for a in apps if a.name == name]
        if not apps:
            raise PageNotFound(f"application {name!r} is not registered")
    open_by_app: dict[str, int] = {}
    for s in state.sessions(open_only=True):
        open_by_app[s.application] = open_by_app.get(s.application, 0) + 1
    rows = [
        [
            link(url("applications", a.name), a.name),
            e(a.state.name.capitalize()),
            f"<code>{e(' '.join([a.spec.command or '', *a.spec.arguments]).strip())}</code>",
            e(a.spec.max_instances or "none"),
            e(a.spec.delay_release),
            e(open_by_app.get(a.name, 0)),
            e(a.spec.description),
        ]
        for a in apps
    ]
    headers = ("application", "state", "command", "max instances", "delay release (s)", "open sessions", "description")
    body = table(headers, rows, empty="no application registered")
    if name is not None:
        sessions = [s for s in state.sessions() if s.application == name]
        body += f"<h2>Sessions</h2>{table(_SESSION_HEADERS, (_session_row(s) for s in sessions), empty='no session')}"
    return page("Applications" if name is None else f"Application {name}", body, active="Applications")
