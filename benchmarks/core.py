"""CPU per task of the session manager's pure core, alone and behind its effect runner, in one run.

The task path without a network: one session, two bound executors, N no-op tasks created at once,
then each executor's in-flight tasks reported done in one message per round (as an executor
manager batches them) until all are done. Measured twice, alternating rounds:
- core: Core.handle only, each commit's ``then`` handed straight back (no storage, no loop);
- controller: the same through the Controller with memory storage on an event loop (group commit,
  on_commit callbacks, link commands into NodeLinks, watchers of nobody).
It prints the median CPU microseconds per task of each path (create + dispatch, outcome + refill
+ stored) and the controller/core ratio: what the runner and storage round trips add to the
state machine. These are the Python costs the session manager pays before gRPC and SQLite
(benchmarks/throughput.py measures the whole process).

Usage: python benchmarks/core.py [--tasks 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from flame.protocol import backend_pb2, types_pb2
from flame.session_manager import effects as fx
from flame.session_manager.controller import Controller
from flame.session_manager.core import ControllerSettings, Core
from flame.session_manager.links import NodeLink
from flame.session_manager.scheduler import plan
from flame.session_manager.storage import MemoryStorage
from flame.types import ApplicationSpec, SessionSpec

PAYLOAD = b" " * 16


def register_node() -> backend_pb2.RegisterNode:
    register = backend_pb2.RegisterNode(name="n1", max_executors=2)
    register.capacity.cpu, register.capacity.memory = 2, 2 * 1024**3
    return register


def outcomes_of(executors: Any) -> backend_pb2.AgentMessage:
    """One message reporting every in-flight task of every executor done."""
    message = backend_pb2.AgentMessage()
    for ex in executors.values():
        for task_id in ex.inflight:
            message.outcomes.add(
                executor_id=ex.id, session_id="s", task_id=task_id, state=types_pb2.Succeed, output=PAYLOAD
            )
    return message


def bound_reports(effects: list[Any]) -> backend_pb2.AgentMessage:
    bound = [e.executor_id for e in effects if isinstance(e, fx.BindOnNode)]
    return backend_pb2.AgentMessage(
        executors=[backend_pb2.ExecutorReport(executor_id=e, state=types_pb2.ExecutorBound) for e in bound]
    )


def settle(core: Core, effects: list[Any]) -> None:
    for effect in effects:
        if isinstance(effect, fx.Commit) and effect.then is not None:
            settle(core, core.handle(effect.then))


def core_round(tasks: int) -> tuple[float, float]:
    core = Core(ControllerSettings())
    settle(core, core.handle(fx.RegisterApplication("app", ApplicationSpec(command="/bin/true"))))
    core.handle(fx.NodeConnected(register_node(), object()))
    settle(core, core.handle(fx.CreateSession("s", SessionSpec(application="app", min_instances=2, max_instances=2))))
    core.handle(fx.NodeMessage("n1", bound_reports(core.handle(fx.ApplyDecision(plan(core.fleet.snapshot()))))))
    core.sessions["s"].task_seconds = 1e-5  # as after a first few no-op tasks: the deepest pipeline
    started = time.process_time()
    settle(core, core.handle(fx.CreateTasks("s", [PAYLOAD] * tasks)))
    create = time.process_time() - started
    finish = 0.0
    while core.sessions["s"].session.succeed < tasks:
        message = outcomes_of(core.executors)
        started = time.process_time()
        settle(core, core.handle(fx.NodeMessage("n1", message)))
        finish += time.process_time() - started
    return create / tasks * 1e6, finish / tasks * 1e6


async def controller_round(tasks: int) -> tuple[float, float]:
    storage = MemoryStorage("memory")
    await storage.start()
    c = Controller(storage, ControllerSettings())
    await c.recover()
    await c.register_application("app", ApplicationSpec(command="/bin/true"))
    link = NodeLink("n1")
    c.handle(fx.NodeConnected(register_node(), link))
    await c.create_session("s", SessionSpec(application="app", min_instances=2, max_instances=2))
    effects = c.core.handle(fx.ApplyDecision(plan(c.core.fleet.snapshot())))
    c.handle(fx.NodeMessage("n1", bound_reports(effects)))
    c.sessions["s"].task_seconds = 1e-5
    started = time.process_time()
    await c.create_tasks("s", [PAYLOAD] * tasks)
    create = time.process_time() - started
    finish = 0.0
    rec = c.sessions["s"]
    while rec.session.succeed < tasks:
        message = outcomes_of(c.executors)
        started = time.process_time()
        c.handle(fx.NodeMessage("n1", message))
        await storage.flush()
        finish += time.process_time() - started
        link._pending.Clear()  # the commands an executor manager would read
    await storage.stop()
    return create / tasks * 1e6, finish / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks per round (default 50000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating (default 5)")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"core": [], "controller": []}
    for _ in range(args.rounds):
        results["core"].append(core_round(args.tasks))
        results["controller"].append(asyncio.run(controller_round(args.tasks)))
    print(f"{args.tasks} no-op tasks a round, {args.rounds} rounds each, 2 executors; CPU us per task, medians")
    print(f"{'':<12}{'create+dispatch':>18}{'outcome+refill':>18}{'total':>10}")
    totals = {}
    for name, rounds in results.items():
        create = statistics.median(r[0] for r in rounds)
        finish = statistics.median(r[1] for r in rounds)
        totals[name] = statistics.median(r[0] + r[1] for r in rounds)
        print(f"{name:<12}{create:>18.2f}{finish:>18.2f}{totals[name]:>10.2f}")
    print(f"ratio controller/core: {totals['controller'] / totals['core']:.2f}")


if __name__ == "__main__":
    main()
