"""Value-at-risk batch, the service: load the book once per executor, then price blocks of scenarios.

Common data (JSON): ``{"portfolio": path, "market": path}``, files the executor's node can read.
Task input (JSON): ``{"first": i, "count": k, "seed": s}``: scenarios i .. i+k-1 of seed s.
Task output (JSON): ``{"pnl": [k floats], "executor": id, "pid": pid, "loads": n, "load_ms": ms}``,
where ``loads`` counts how many times this process has loaded the data: the client adds these up
to show that the data is loaded once per executor, not once per task.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from var_model import Revaluer

import flame

logger = logging.getLogger("var_service")


def _parse_block(data: bytes | None) -> tuple[int, int, int]:
    """(first, count, seed) from a task input; ValueError saying what is accepted."""
    expected = 'a JSON object like {"first": 0, "count": 100, "seed": 7} of whole numbers, first >= 0, count >= 1'
    try:
        request: Any = json.loads(data or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"task input must be {expected}, got {(data or b'')[:80]!r}") from None
    if not isinstance(request, dict) or set(request) != {"first", "count", "seed"}:
        raise ValueError(f"task input must be {expected}, got {request!r}")
    values = [request["first"], request["count"], request["seed"]]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values) or values[0] < 0 or values[1] < 1:
        raise ValueError(f"task input must be {expected}, got {request!r}")
    return values[0], values[1], values[2]


class VarService(flame.FlameService):
    def __init__(self) -> None:
        self.loads = 0
        self.load_ms = 0.0
        self.revaluer: Revaluer | None = None

    def on_session_enter(self, context: flame.SessionContext) -> None:
        raw = context.common_data()
        try:
            files = json.loads(raw or b"")
            portfolio, market = files["portfolio"], files["market"]
        except (ValueError, TypeError, KeyError):
            raise ValueError(
                f'common data must be JSON {{"portfolio": path, "market": path}}, got {(raw or b"")[:120]!r}'
            ) from None
        began = time.perf_counter()
        self.revaluer = Revaluer.load(portfolio, market)
        self.load_ms = (time.perf_counter() - began) * 1000
        self.loads += 1
        logger.info(
            "session %s: loaded %d positions and %d risk factors in %.1f ms (load #%d in this process)",
            context.session_id,
            len(self.revaluer.portfolio),
            len(self.revaluer.market.factors),
            self.load_ms,
            self.loads,
        )

    def on_task_invoke(self, context: flame.TaskContext) -> bytes:
        if self.revaluer is None:
            raise RuntimeError("no portfolio loaded: on_session_enter did not run")
        first, count, seed = _parse_block(context.input)
        reply = {
            "pnl": self.revaluer.block(first, count, seed),
            "executor": os.environ.get("FLAME_EXECUTOR_ID", ""),
            "pid": os.getpid(),
            "loads": self.loads,
            "load_ms": round(self.load_ms, 3),
        }
        return json.dumps(reply).encode()

    def on_session_leave(self) -> None:
        self.revaluer = None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flame.run(VarService())
