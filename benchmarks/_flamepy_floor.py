"""The ceiling of Flame (b): unmodified flamepy services called directly, nothing in between.

Flame (b) runs each task as one unary ``OnTaskInvoke`` on a flamepy service, one call at a time
per executor, as Flame does. This ceiling spawns the same no-op flamepy services
(_flamepy_noop.py, each on its own Unix socket) and calls them from this process with bare
grpc.aio unary calls, one in flight per service, with no client, session manager or storage.
A driver making these calls and doing anything besides runs fewer tasks a second on the same
machine (on 2 cores the caller's CPU counts: a grpc.aio unary call costs it a few hundred us).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from _grpc_floor import bench_loop

from flame.protocol import shim_pb2, shim_pb2_grpc

SERVICE = Path(__file__).resolve().with_name("_flamepy_noop.py")
START_TIMEOUT = 60.0
SESSION_ID = "flamepy-ceiling"


class FlamepyCeiling:
    """``services`` flamepy no-op services; run_burst / run_one from this process's own loop."""

    def __init__(self, services: int = 2) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="flame-bench-flamepy-")
        self._processes: list[subprocess.Popen[bytes]] = []
        sockets = [Path(self._dir.name) / f"service-{i}.sock" for i in range(services)]
        for path in sockets:
            env = {**os.environ, "FLAME_INSTANCE_ENDPOINT": str(path)}
            self._processes.append(subprocess.Popen([sys.executable, str(SERVICE)], env=env))
        self._loop = bench_loop()
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[Any] = self._loop.run_until_complete(self._connect(sockets))
        self._next = 0
        self._task_id = 0

    async def _connect(self, sockets: list[Path]) -> list[Any]:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(path.exists() for path in sockets):
            exited = [p.returncode for p in self._processes if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                raise SystemExit(
                    f"the flamepy services did not listen within {START_TIMEOUT:.0f}s (exit codes {exited})"
                )
            await asyncio.sleep(0.01)
        stubs = []
        context = shim_pb2.SessionContext(session_id=SESSION_ID, application=shim_pb2.ApplicationContext(name="noop"))
        for path in sockets:
            channel = grpc.aio.insecure_channel(f"unix://{path}")
            self._channels.append(channel)
            await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT)
            stub = shim_pb2_grpc.InstanceStub(channel)
            result = await stub.OnSessionEnter(context)
            if result.return_code != 0:
                raise SystemExit(f"a flamepy service refused OnSessionEnter: {result.message}")
            stubs.append(stub)
        return stubs

    async def _invoke(self, stub: Any, payload: bytes) -> bytes:
        self._task_id += 1
        task = shim_pb2.TaskContext(task_id=str(self._task_id), session_id=SESSION_ID, input=payload)
        result = await stub.OnTaskInvoke(task)
        if result.return_code != 0:
            raise SystemExit(f"a flamepy service failed a task: {result.message}")
        output: bytes = result.output
        return output

    def run_burst(self, count: int, payload: bytes) -> list[bytes]:
        """``count`` tasks, dealt round-robin, one call in flight per service."""
        n = len(self._stubs)

        async def one_service(index: int) -> list[bytes]:
            return [await self._invoke(self._stubs[index], payload) for _ in range(index, count, n)]

        async def burst() -> list[bytes]:
            parts = await asyncio.gather(*(one_service(i) for i in range(n)))
            return [output for part in parts for output in part]

        return self._loop.run_until_complete(burst())

    def run_one(self, payload: bytes) -> bytes:
        stub = self._stubs[self._next % len(self._stubs)]
        self._next += 1
        return self._loop.run_until_complete(self._invoke(stub, payload))

    def close(self) -> None:
        for channel in self._channels:
            self._loop.run_until_complete(channel.close())
        for process in self._processes:
            process.kill()
            process.wait()
        self._dir.cleanup()
