"""The transport floor of Flame's task path: grpc.aio streams doing nothing but forwarding bytes.

A task of Flame crosses two processes on its way: client -> session manager -> service and back.
This floor has the same shape with no work in it: the client writes each 16-byte message on one
bidirectional stream to a relay process, which forwards it round-robin on streams to two echo
processes and writes each reply back. One message per task (no batching), no storage, no
scheduling, protobuf-free (bytes in, bytes out). Its latency is what two chained grpc.aio round
trips cost on this machine, so no system built on them answers a single task faster.

Run as a child: ``python _grpc_floor.py echo`` or ``python _grpc_floor.py relay PORT PORT``; it
prints the port it listens on, then serves until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

_METHOD = "/floor.Floor/Stream"
_SERVICE, _NAME = "floor.Floor", "Stream"
START_TIMEOUT = 30.0


_loop: asyncio.AbstractEventLoop | None = None


def bench_loop() -> asyncio.AbstractEventLoop:
    """The event loop this process's floors run on: one for the process's life, never closed.

    grpc.aio ties its completion queue to the loop it first ran on; a second loop made after the
    first one closed gets "Event loop is closed" tracebacks from it.
    """
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


def _identity(data: bytes) -> bytes:
    return data


def _open_stream(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(_METHOD, request_serializer=_identity, response_deserializer=_identity)()


async def _serve(handler: Any) -> None:
    server = grpc.aio.server()
    method = grpc.stream_stream_rpc_method_handler(
        handler, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {_NAME: method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def _echo(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


def _relay(upstream_ports: list[int]) -> Any:
    async def relay(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in upstream_ports]
        streams = [_open_stream(channel) for channel in channels]

        async def forward() -> None:
            turn = itertools.cycle(streams)
            async for message in requests:
                await next(turn).write(message)

        async def collect(stream: Any) -> None:
            async for reply in stream:
                replies.put_nowait(reply)

        tasks = [asyncio.ensure_future(forward()), *(asyncio.ensure_future(collect(s)) for s in streams)]
        try:
            while True:
                yield await replies.get()
        finally:
            for task in tasks:
                task.cancel()
            for channel in channels:
                await channel.close()

    return relay


class Floor:
    """Spawns the relay and two echo processes; run_burst / run_one from this process's own loop."""

    def __init__(self, echoes: int = 2) -> None:
        self._processes: list[subprocess.Popen[str]] = []
        upstream = [self._spawn("echo") for _ in range(echoes)]
        self.port = self._spawn("relay", *map(str, upstream))
        self._loop = bench_loop()
        self._channel = self._loop.run_until_complete(self._connect())
        self._stream = _open_stream(self._channel)

    def _spawn(self, *args: str) -> int:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True
        )
        self._processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()  # the child prints its port once it listens
        if not line.strip().isdigit():
            raise SystemExit(f"the gRPC floor's {args[0]} process did not start (it printed {line!r})")
        return int(line)

    async def _connect(self) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT)
        return channel

    def run_burst(self, count: int, payload: bytes) -> list[bytes]:
        async def burst() -> list[bytes]:
            async def write() -> None:
                for _ in range(count):
                    await self._stream.write(payload)

            writer = asyncio.ensure_future(write())
            replies = [await self._stream.read() for _ in range(count)]
            await writer
            return replies

        return self._loop.run_until_complete(burst())

    def run_one(self, payload: bytes) -> bytes:
        async def one() -> bytes:
            await self._stream.write(payload)
            reply: bytes = await self._stream.read()
            return reply

        return self._loop.run_until_complete(one())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.cancel()
            self._loop.run_until_complete(self._channel.close())
        for process in self._processes:
            process.kill()
            process.wait()


def main(argv: list[str]) -> None:
    if argv[:1] == ["echo"]:
        asyncio.run(_serve(_echo))
    elif argv[:1] == ["relay"] and len(argv) > 1:
        asyncio.run(_serve(_relay([int(port) for port in argv[1:]])))
    else:
        raise SystemExit("usage: _grpc_floor.py echo | relay PORT [PORT ...]")


if __name__ == "__main__":
    main(sys.argv[1:])
