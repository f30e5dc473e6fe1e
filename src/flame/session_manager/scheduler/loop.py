"""The scheduling loop: snapshot -> plan -> apply, each interval or when kicked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flame.session_manager.effects import ApplyDecision, CheckNodes
from flame.session_manager.scheduler.plan import Scheduler
from flame.session_manager.scheduler.snapshot import Decision
from flame.types import now_ms

if TYPE_CHECKING:
    from flame.session_manager.controller import Controller
    from flame.session_manager.providers import Provider

logger = logging.getLogger(__name__)


async def run_scheduler(
    controller: Controller,
    interval_ms: int,
    scheduler: Scheduler | None = None,
    provider: Provider | None = None,
    on_cycle: Callable[[Decision, float], None] | None = None,
) -> None:
    """Run forever (until cancelled). A failing cycle is logged and the next one runs.

    ``scheduler`` carries the configured policies (``Scheduler(config.policies)``); the
    default is priority then fair share. ``provider`` is told after each cycle what the
    registered nodes could not give (it adds nodes, e.g. Kubernetes pods). ``on_cycle`` is told
    each applied decision and the seconds its cycle took (metrics, the dashboard).
    """
    scheduler = scheduler or Scheduler()
    while True:
        await controller.wait_for_kick(interval_ms / 1000)
        try:
            started = time.perf_counter()
            controller.handle(CheckNodes(now_ms()))
            snapshot = controller.core.fleet.snapshot()
            decision = scheduler.plan(snapshot)
            controller.handle(ApplyDecision(decision))
            if provider is not None:
                provider.reconcile(decision.unmet, snapshot)
            spent_ms = (time.perf_counter() - started) * 1000
            if on_cycle is not None:
                on_cycle(decision, spent_ms / 1000)
            if spent_ms > interval_ms:
                logger.warning("scheduling cycle took %.0f ms (interval %d ms)", spent_ms, interval_ms)
        except Exception:
            logger.exception("scheduling cycle failed; retrying at the next interval")
