"""The blocking entry point used by the CLI; the only place that handles signals."""

from __future__ import annotations

import asyncio
import logging
import signal

from flame.executor_manager._agent import ExecutorManager
from flame.executor_manager._compat import TaskGroup
from flame.executor_manager._settings import AgentSettings

logger = logging.getLogger(__name__)


def run_executor_manager(settings: AgentSettings) -> None:
    """Run an executor manager until SIGINT or SIGTERM, then shut it down gracefully."""
    asyncio.run(_main(settings))


async def _main(settings: AgentSettings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        logger.info("received %s", signum.name)
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with ExecutorManager(settings) as manager, TaskGroup() as tg:
            loop.add_signal_handler(signal.SIGHUP, manager.reload_token)
            tg.create_task(_shutdown_when(stop, manager))
            try:
                await manager.serve()
            finally:
                stop.set()
    finally:
        for signum in (*signals, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _shutdown_when(stop: asyncio.Event, manager: ExecutorManager) -> None:
    await stop.wait()
    await manager.shutdown()
