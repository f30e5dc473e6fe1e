"""The dashboard's HTTP server (aiohttp, on the session manager's event loop).

Read-only: pages, server-sent events from the publisher, ``/metrics`` and the static assets
shipped in this package. Bound beyond loopback it requires the configured token (a bearer
header, the cookie the ``?token=`` link sets, or that query parameter) and serves TLS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from flame.dashboard import _pages
from flame.dashboard._dashboard import COOKIE
from flame.dashboard._html import error_page
from flame.dashboard._publisher import OVERVIEW, SESSION_PREFIX

if TYPE_CHECKING:
    from flame.dashboard._dashboard import Dashboard

logger = logging.getLogger(__name__)

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """The HTTP side of a :class:`~flame.dashboard._dashboard.Dashboard`: its pages, streams and /metrics."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.config = dashboard.config
        self.tls = dashboard.tls
        self.state = dashboard.state
        self.metrics = dashboard.metrics
        self.publisher = dashboard.publisher
        self._runner: web.AppRunner | None = None
        self._static = _load_static()

    @property
    def url(self) -> str:
        return self.dashboard.url

    async def start(self, sockets: list[socket.socket]) -> None:
        """Serve on ``sockets``, already listening (the dashboard bound them)."""
        app = web.Application(middlewares=[self._errors, self._auth])
        app.router.add_get("/", self._overview)
        app.router.add_get("/sessions", self._page(lambda r: _pages.sessions(self.state)))
        app.router.add_get("/sessions/{session}", self._session)
        app.router.add_get("/sessions/{session}/tasks/{task}", self._task)
        app.router.add_get("/applications", self._page(lambda r: _pages.applications(self.state)))
        app.router.add_get(
            "/applications/{name}", self._page(lambda r: _pages.applications(self.state, r.match_info["name"]))
        )
        app.router.add_get("/executors", self._page(lambda r: _pages.executors(self.state)))
        app.router.add_get("/executors/{executor}", self._executor)
        app.router.add_get("/nodes", self._page(lambda r: _pages.nodes(self.state)))
        app.router.add_get("/nodes/{name}", self._page(lambda r: _pages.nodes(self.state, r.match_info["name"])))
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/overview", self._api_overview)
        app.router.add_get("/api/sessions/{session}", self._api_session)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/static/{name}", self._static_file)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            for sock in sockets:
                await web.SockSite(runner, sock, ssl_context=self.dashboard.ssl_context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        logger.debug("dashboard web server loaded")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _pages.PageNotFound as exc:
            return _html_response(error_page(404, "Not found", str(exc)), 404)
        except web.HTTPNotFound:
            return _html_response(error_page(404, "Not found", f"no page at {request.path}"), 404)
        except web.HTTPMethodNotAllowed:
            return _html_response(error_page(405, "Read-only", "the dashboard only answers GET"), 405)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        accepts = self.dashboard.accepts
        if not self.dashboard.protected or request.path.startswith("/static/"):
            return await handler(request)
        transport = request.transport
        if transport is not None and self.dashboard.accepts_certificate(transport.get_extra_info("peercert")):
            return await handler(request)
        given = request.query.get("token")
        if given is not None and accepts(given):  # a shared link: keep it in a cookie, drop it from the url
            query = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPFound(request.rel_url.with_query(query))
            response.set_cookie(COOKIE, given, httponly=True, samesite="Strict", secure=self.tls is not None)
            raise response
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        for candidate in (bearer, request.cookies.get(COOKIE)):
            if candidate and accepts(candidate):
                return await handler(request)
        message = "a valid token is required: open the link with ?token=..., or send 'Authorization: Bearer <token>'"
        if request.path == "/metrics" or request.path.startswith("/api/"):
            return web.Response(status=401, text=message + "\n", headers={"WWW-Authenticate": "Bearer"})
        return _html_response(error_page(401, "Unauthorized", message), 401, {"WWW-Authenticate": "Bearer"})

    # ---- pages ------------------------------------------------------------------------------

    def _page(self, render: Callable[[web.Request], str]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return _html_response(self.metrics.cpu.run(render, request))

        return handle

    async def _overview(self, request: web.Request) -> web.StreamResponse:
        return _html_response(self.metrics.cpu.run(_pages.overview, self.state, self.publisher))

    async def _session(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        session_id = request.match_info["session"]
        task_state, known, page_no = _pages.task_query(query)
        offset = (page_no - 1) * _pages.PAGE_SIZE
        listing = await self.state.tasks(session_id, task_state, offset, _pages.PAGE_SIZE) if known else ([], 0)
        page = self.metrics.cpu.run(_pages.session, self.state, self.publisher, session_id, query, listing)
        return _html_response(page)

    async def _task(self, request: web.Request) -> web.StreamResponse:
        session_id, task_id = request.match_info["session"], request.match_info["task"]
        info = await self.state.task(session_id, task_id)
        path = self.state.log_file(info.executor) if info is not None and info.executor else None
        tail = await asyncio.to_thread(read_tail, path, _pages.LOG_TAIL_BYTES) if path else None
        return _html_response(self.metrics.cpu.run(_pages.task, self.state, session_id, task_id, info, tail))

    async def _executor(self, request: web.Request) -> web.StreamResponse:
        executor_id = request.match_info["executor"]
        path = self.state.log_file(executor_id)
        tail = await asyncio.to_thread(read_tail, path, _pages.LOG_TAIL_BYTES) if path else None
        return _html_response(self.metrics.cpu.run(_pages.executor, self.state, executor_id, tail))

    # ---- data -------------------------------------------------------------------------------

    def _topic(self, request: web.Request) -> str:
        topic = request.query.get("topic", OVERVIEW)
        if topic == OVERVIEW:
            return topic
        if topic.startswith(SESSION_PREFIX) and self.state.session(topic[len(SESSION_PREFIX) :]) is not None:
            return topic
        raise _pages.PageNotFound(f"no live topic {topic!r}: accepted 'overview' or 'session:<an existing id>'")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        topic = self._topic(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            async for payload in self.publisher.subscribe(topic):
                started = time.perf_counter()
                data = f"data: {payload}\n\n".encode()
                self.metrics.cpu.seconds += time.perf_counter() - started
                await response.write(data)
        except (ConnectionResetError, ConnectionError):
            pass  # the page was closed
        return response

    async def _api_overview(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self.publisher.render(OVERVIEW), content_type="application/json")

    async def _api_session(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session"]
        if self.state.session(session_id) is None:
            return web.json_response({"error": f"session {session_id!r} does not exist"}, status=404)
        return web.Response(text=self.publisher.render(SESSION_PREFIX + session_id), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        content = self._static.get(name)
        if content is None:
            raise web.HTTPNotFound()
        kind = _STATIC_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return web.Response(body=content, headers={"Content-Type": kind, "Cache-Control": "max-age=3600"})


def _html_response(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=headers)


def _load_static() -> dict[str, bytes]:
    folder = resources.files("flame.dashboard") / "static"
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


def read_tail(path: str, limit: int) -> str | None:
    """The last ``limit`` bytes of a text file, from a line start; None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - limit))
            data = f.read(limit)
    except OSError:
        return None
    if end > limit and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return data.decode("utf-8", errors="replace")
