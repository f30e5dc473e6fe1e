"""Elasticity demo, the service: each task sleeps, standing in for a short piece of work.

Task input (JSON): ``{"ms": N}`` (0 <= N <= 60000). Output (JSON): ``{"executor": id, "pid": pid}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import flame

MAX_MS = 60_000


def _parse_ms(data: bytes | None) -> int:
    try:
        request: Any = json.loads(data or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        request = None
    ms = request.get("ms") if isinstance(request, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_MS:
        raise ValueError(f'task input must be JSON like {{"ms": 200}} with 0 <= ms <= {MAX_MS}, got {data!r}')
    return ms


class SleepService(flame.FlameService):
    async def on_task_invoke(self, context: flame.TaskContext) -> bytes:
        await asyncio.sleep(_parse_ms(context.input) / 1000)
        return json.dumps({"executor": os.environ.get("FLAME_EXECUTOR_ID", ""), "pid": os.getpid()}).encode()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flame.run(SleepService())
