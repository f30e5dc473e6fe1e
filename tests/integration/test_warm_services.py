"""Warm interpreters: a service of this Python starts in one, and cannot tell it from a cold start.

Against the fake session manager of test_executor_manager_agent: each test binds real services and
compares what they see, or counts the node's warm interpreters through /proc.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flame.executor_manager import ExecutorManager
from flame.executor_manager.shims._warm import WARM_MAIN
from flame.protocol import backend_pb2, types_pb2
from tests.integration.test_executor_manager_agent import (
    BOUND,
    FakeSessionManager,
    alive,
    backend_server,
    eventually,
    run,
    run_task,
    serving,
    settings_for,
)

REPORT = """
import json, os, sys
import flame


class Report(flame.FlameService):
    def on_session_enter(self, context):
        pass

    def on_task_invoke(self, context):
        main = sys.modules["__main__"]
        seen = {
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "path0": sys.path[0],
            "name": __name__,
            "file": main.__file__,
            "setting": os.environ.get("APP_SETTING"),
            "executor": os.environ.get("FLAME_EXECUTOR_ID"),
            "stdin": sys.stdin.read(),
            "executable": sys.executable,
        }
        return json.dumps(seen).encode()

    def on_session_leave(self):
        pass


print("service starting", flush=True)
print("on stderr", file=sys.stderr, flush=True)
flame.run(Report())
"""


def warm_pids() -> set[int]:
    """This process's children that are warm interpreters (idle or turned into a service)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == os.getpid() and WARM_MAIN.encode() in command:
            found.add(int(entry.name))
    return found


def is_warm(pid: int) -> bool:
    try:
        return WARM_MAIN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def report_app(tmp_path: Path, arguments: list[str]) -> types_pb2.ApplicationSpec:
    app_dir = tmp_path / "app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "report_service.py").write_text(REPORT)
    return types_pb2.ApplicationSpec(
        command="${FLAME_PYTHON}",
        arguments=arguments,
        working_directory=str(app_dir),
        environments=[types_pb2.Environment(name="APP_SETTING", value="from the spec")],
    )


def bind_spec(executor_id: str, session_id: str, spec: types_pb2.ApplicationSpec) -> backend_pb2.BindExecutor:
    return backend_pb2.BindExecutor(
        executor_id=executor_id, session_id=session_id, application_name="report", application=spec
    )


@dataclass
class Node:
    fake: FakeSessionManager
    manager: ExecutorManager
    work_dir: Path

    async def report(self, executor_id: str, spec: types_pb2.ApplicationSpec) -> tuple[dict[str, Any], int]:
        """Create and bind ``executor_id``, run one task; what the service saw and its pid."""
        fake = self.fake
        fake.send(create=[backend_pb2.CreateExecutor(executor_id=executor_id)])
        fake.send(bind=[bind_spec(executor_id, f"s-{executor_id}", spec)])
        await eventually(lambda: BOUND in fake.states(executor_id))
        fake.send(run=[run_task(executor_id, f"s-{executor_id}", f"t-{executor_id}", b"")])
        outcome = await eventually(lambda: fake.outcomes().get(f"t-{executor_id}"))
        assert outcome.state == types_pb2.Succeed, outcome.message
        recorded = self.work_dir / "pids" / f"{executor_id}.pid"  # the pid the node recorded
        return json.loads(outcome.output), int(recorded.read_text().split("\n", 1)[0])


@asynccontextmanager
async def node(tmp_path: Path, work: str, slots: int, warm: bool = True) -> AsyncIterator[Node]:
    """An executor manager with ``slots`` slots against the fake session manager, its warm
    interpreters (if ``warm``) all started."""
    fake = FakeSessionManager()
    work_dir = tmp_path / work
    async with backend_server(fake) as port:
        settings = settings_for(tmp_path, port, work_dir=work_dir, warm_services=warm, max_executors=slots)
        async with serving(ExecutorManager(settings)) as manager:
            await eventually(lambda: manager.connected and manager.warm_interpreters == (slots if warm else 0))
            yield Node(fake, manager, work_dir)


def test_a_warm_service_sees_what_a_cold_one_sees(tmp_path: Path) -> None:
    """Same argv, __main__ file, sys.path[0], cwd, environment and stdin, for a script and for -m."""

    async def scenario(warm: bool, arguments: list[str], executor_id: str) -> tuple[dict[str, Any], bool, str]:
        async with node(tmp_path, "warm" if warm else "cold", 2, warm) as local:
            seen, pid = await local.report(executor_id, report_app(tmp_path, arguments))
            started_warm = is_warm(pid)
        log = (local.work_dir / "logs" / f"{executor_id}.log").read_text()
        assert seen["executor"] == executor_id
        return {**seen, "executor": "<id>"}, started_warm, log

    for arguments in (["report_service.py", "an-argument"], ["-m", "report_service", "an-argument"]):
        cold, cold_was_warm, cold_log = run(scenario(False, arguments, "e-cold"))
        warm, warm_was_warm, warm_log = run(scenario(True, arguments, "e-warm"))
        assert (cold_was_warm, warm_was_warm) == (False, True)
        assert warm == cold
        assert cold["argv"][1:] == ["an-argument"] and cold["name"] == "__main__"
        assert cold["setting"] == "from the spec" and cold["stdin"] == ""
        assert cold["path0"] == str(tmp_path / "app")
        for log in (cold_log, warm_log):
            assert "service starting" in log and "on stderr" in log


def test_each_free_slot_holds_one_warm_interpreter_and_shutdown_stops_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node(tmp_path, "work", 2) as local:
            idle = warm_pids()
            assert len(idle) == 2
            _, pid = await local.report("e1", report_app(tmp_path, ["report_service.py"]))
            assert pid in idle  # one of them became the service
            assert local.manager.warm_interpreters == 1  # the other slot keeps its own
            local.fake.send(unbind=[backend_pb2.ExecutorCommand(executor_id="e1")])
            await eventually(lambda: local.fake.states("e1")[-1] == types_pb2.ExecutorIdle)
            await eventually(lambda: not alive(pid))
            await eventually(lambda: local.manager.warm_interpreters == 2)  # the freed slot gets a new one
            before_shutdown = warm_pids()
            assert len(before_shutdown) == 2 and pid not in before_shutdown
        await eventually(lambda: not any(alive(p) for p in before_shutdown))
        assert warm_pids() == set()

    run(scenario())


def test_a_service_of_another_command_starts_cold_and_takes_a_warm_slot(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node(tmp_path, "work", 2) as local:
            spec = report_app(tmp_path, ["-c", f"exec {sys.executable} report_service.py"])
            spec.command = "/bin/sh"
            seen, pid = await local.report("e1", spec)
            assert not is_warm(pid) and seen["setting"] == "from the spec"
            # Two slots, one service: one warm interpreter, never more interpreters than slots.
            await eventually(lambda: local.manager.warm_interpreters == 1 and len(warm_pids()) == 1)

    run(scenario())


def test_a_missing_module_fails_the_bind_as_python_would_say_it(tmp_path: Path) -> None:
    async def scenario(warm: bool) -> str:
        async with node(tmp_path, "warm" if warm else "cold", 1, warm) as local:
            spec = report_app(tmp_path, ["-m", "no_such_module_here"])
            local.fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")])
            local.fake.send(bind=[bind_spec("e1", "s1", spec)])
            await eventually(lambda: len(local.fake.states("e1")) == 3)  # idle, binding, idle again
            return str(local.fake.reports("e1")[-1].message)

    for warm in (False, True):
        message = run(scenario(warm))
        assert f"{sys.executable}: No module named no_such_module_here" in message, message


def test_an_interpreter_stopped_as_a_service_before_it_was_ready_is_replaced_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bind abandoned while its warm interpreter still imports: the slot gets a new one, and the
    pool does not mistake the stopped service for an interpreter that failed to start."""

    async def scenario() -> None:
        fake = FakeSessionManager()
        async with backend_server(fake) as port:
            settings = settings_for(tmp_path, port, max_executors=1)
            async with serving(ExecutorManager(settings)) as manager:
                await eventually(lambda: manager.connected and manager.warm_interpreters == 1)
                first = warm_pids()  # spawned, most likely still importing grpc
                fake.send(create=[backend_pb2.CreateExecutor(executor_id="e1")])
                fake.send(bind=[bind_spec("e1", "s1", report_app(tmp_path, ["report_service.py"]))])
                await eventually(lambda: manager.warm_interpreters == 0)
                fake.send(unbind=[backend_pb2.ExecutorCommand(executor_id="e1")])
                await eventually(lambda: fake.states("e1")[-1] == types_pb2.ExecutorIdle)
                await eventually(lambda: manager.warm_interpreters == 1 and bool(warm_pids() - first))
                fake.send(release=[backend_pb2.ExecutorCommand(executor_id="e1")])  # the node's one slot
                await eventually(lambda: fake.states("e1")[-1] == types_pb2.ExecutorReleased)
                _, pid = await Node(fake, manager, settings.work_dir).report(
                    "e2", report_app(tmp_path, ["report_service.py"])
                )
                assert is_warm(pid)

    with caplog.at_level(logging.WARNING, logger="flame.executor_manager.shims._warm"):
        run(scenario())
    assert not [r for r in caplog.records if "during its start-up" in r.getMessage()]
