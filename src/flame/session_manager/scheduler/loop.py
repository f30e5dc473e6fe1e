"""The scheduling loop: snapshot -> plan -> apply, each interval or when kicked."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flame.session_manager.scheduler.plan import plan
from flame.types import now_ms

if TYPE_CHECKING:
    from flame.session_manager.controller import Controller
    from flame.session_manager.fleet import Fleet

logger = logging.getLogger(__name__)


async def run_scheduler(controller: Controller, fleet: Fleet, interval_ms: int) -> None:
    """Run forever (until cancelled). A failing cycle is logged and the next one runs."""
    while True:
        await controller.wait_for_kick(interval_ms / 1000)
        try:
            fleet.check_nodes(now_ms())
            fleet.apply(plan(fleet.snapshot()))
        except Exception:
            logger.exception("scheduling cycle failed; retrying at the next interval")
