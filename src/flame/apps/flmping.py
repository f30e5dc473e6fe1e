"""flmping: the built-in service that proves a cluster runs tasks end to end.

A task's input is optional JSON ``{"duration_ms": N}`` (empty input means 0); the task sleeps
that long and returns JSON naming where it ran::

    {"host": ..., "pid": ..., "executor": $FLAME_EXECUTOR_ID, "session": ..., "task": ..., "duration_ms": N}

Run it as ``python -m flame.apps.flmping`` under an executor manager.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

from flame.apps import FLMPING_APPLICATION as FLMPING_APPLICATION  # importable from here too
from flame.apps import FLMPING_MAX_DURATION_MS
from flame.service import FlameService, SessionContext, TaskContext, run
from flame.types import ApplicationSpec


def flmping_application_spec() -> ApplicationSpec:
    """The spec to register flmping with (the executor manager sets $FLAME_PYTHON to its interpreter)."""
    return ApplicationSpec(
        description="Built-in ping service: sleeps duration_ms and reports the host, process and executor",
        command="${FLAME_PYTHON}",
        arguments=["-m", "flame.apps.flmping"],
    )


def parse_duration_ms(data: bytes | None) -> int:
    """The ``duration_ms`` of a task input; raises ValueError saying what is accepted."""
    if not data or not data.strip():
        return 0
    try:
        request: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f'flmping input must be JSON like {{"duration_ms": 100}}, got {data[:80]!r}: {exc}') from None
    if not isinstance(request, dict) or set(request) - {"duration_ms"}:
        raise ValueError(f'flmping input must be a JSON object with only "duration_ms", got {data[:80]!r}')
    duration = request.get("duration_ms", 0)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration <= FLMPING_MAX_DURATION_MS:
        raise ValueError(
            f"duration_ms must be a whole number of milliseconds from 0 to {FLMPING_MAX_DURATION_MS}, got {duration!r}"
        )
    return duration


class FlmpingService(FlameService):
    async def on_session_enter(self, context: SessionContext) -> None:
        pass  # nothing to prepare: every task reports its own context

    async def on_task_invoke(self, context: TaskContext) -> bytes:
        duration = parse_duration_ms(context.input)
        if duration:
            await asyncio.sleep(duration / 1000)
        reply = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "executor": os.environ.get("FLAME_EXECUTOR_ID"),
            "session": context.session_id,
            "task": context.task_id,
            "duration_ms": duration,
        }
        return json.dumps(reply).encode()

    async def on_session_leave(self) -> None:
        pass


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(FlmpingService())


if __name__ == "__main__":
    main()
