"""A small HTTP/1.1 server on asyncio streams: keep-alive, JSON bodies, chunked streams (for watches)."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


@dataclass
class Response:
    status: int = 200
    body: Any = None
    stream: AsyncIterator[Any] | None = None  # JSON objects sent one per line, chunked


Handler = Callable[[Request], Awaitable[Response]]


class Server:
    """Listens on ``host``, port 0; ``close`` ends every open connection (watches included)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._connection, host, 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await _one(reader, writer, self.handler):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, RuntimeError, ssl.SSLError):
            pass  # the client went away (or the transport was closed under a write)
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections.values()):
            writer.close()  # a watch notices at its next write (a bookmark at the latest)
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> bool:
    line = await reader.readline()
    if not line:
        return False
    method, target, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(raw) if raw.strip() else None
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query))
    response = await handler(Request(method, url.path.rstrip("/") or "/", query, body, headers))
    head = f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}\r\nContent-Type: application/json\r\n"
    if response.stream is None:
        data = json.dumps(response.body).encode()
        writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()
        return True
    writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
    await writer.drain()
    try:
        async for item in response.stream:
            data = json.dumps(item).encode() + b"\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    finally:
        await response.stream.aclose()  # type: ignore[attr-defined]
    return True
