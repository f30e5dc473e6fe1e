"""Session manager semantics driven through the Controller (its core and effect runner), without a network.

A NodeLink stands in for an executor manager's stream: the test reads the commands
the session manager sends it and answers with reports and outcomes as an agent would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from flame.errors import AlreadyExists, Internal, InvalidArgument, InvalidState, NotFound
from flame.protocol import backend_pb2, types_pb2
from flame.session_manager.controller import Controller, ControllerSettings, SessionWatch
from flame.session_manager.effects import ApplyDecision, CheckNodes, NodeConnected, NodeMessage
from flame.session_manager.links import NodeLink
from flame.session_manager.records import NodeRecord
from flame.session_manager.scheduler import plan
from flame.session_manager.storage import MemoryStorage, SqliteStorage, Storage
from flame.types import (
    EVENT_SESSION_BIND_FAILED,
    EVENT_SESSION_BIND_GIVEN_UP,
    ApplicationSpec,
    ExecutorState,
    SessionSpec,
    SessionState,
    Task,
    TaskState,
)

T = TypeVar("T")
X = types_pb2.ExecutorState


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro_fn(), 20)

    return asyncio.run(main())


class Harness:
    def __init__(self, storage: Storage | None = None, **settings: object) -> None:
        self.storage = storage or MemoryStorage("memory")
        self.c = Controller(self.storage, ControllerSettings(**settings))  # type: ignore[arg-type]
        self.link = NodeLink("n1")
        self.node: NodeRecord | None = None

    async def start(self, cpu: int = 4) -> None:
        await self.storage.start()
        await self.c.recover()
        await self.c.register_application("app", ApplicationSpec(command="/bin/true"))
        register = backend_pb2.RegisterNode(name="n1", max_executors=cpu)
        register.capacity.cpu, register.capacity.memory = cpu, cpu * 1024**3
        self.c.handle(NodeConnected(register, self.link))
        self.node = self.c.nodes["n1"]
        await self.take()  # the Registered reply

    async def take(self) -> backend_pb2.ManagerMessage:
        message = await asyncio.wait_for(self.link.next_message(), 5)
        assert message is not None
        return message

    def schedule(self) -> None:
        self.c.handle(ApplyDecision(plan(self.c.core.fleet.snapshot())))

    def report(self, executor_id: str, state: int, session_id: str | None = None, message: str | None = None) -> None:
        report = backend_pb2.ExecutorReport(
            executor_id=executor_id, state=state, session_id=session_id, message=message
        )
        self.c.handle(NodeMessage("n1", backend_pb2.AgentMessage(executors=[report])))

    async def outcome(self, executor_id: str, session_id: str, task_id: str, **kw: object) -> None:
        outcome = backend_pb2.TaskOutcome(executor_id=executor_id, session_id=session_id, task_id=task_id, **kw)  # type: ignore[arg-type]
        self.c.handle(NodeMessage("n1", backend_pb2.AgentMessage(outcomes=[outcome])))
        await self.storage.flush()

    async def bound_executor(self, session_id: str) -> str:
        """Schedule, and answer the create+bind with Bound; return the executor id."""
        self.schedule()
        message = await self.take()
        executor_id = message.bind[0].executor_id
        self.report(executor_id, X.ExecutorBound, session_id)
        return executor_id


def test_application_lifecycle_and_validation() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        with pytest.raises(AlreadyExists):
            await h.c.register_application("app", ApplicationSpec(command="x"))
        with pytest.raises(InvalidArgument, match="invalid application name"):
            await h.c.register_application("bad name!", ApplicationSpec(command="x"))
        await h.c.register_application("nocmd", ApplicationSpec())  # as Flame: binding it fails instead
        with pytest.raises(InvalidArgument, match="working_directory must be an absolute path"):
            await h.c.register_application("relwd", ApplicationSpec(command="x", working_directory="w"))
        with pytest.raises(NotFound):
            await h.c.update_application("missing", ApplicationSpec(command="x"))
        session = await h.c.create_session("s1", SessionSpec(application="app"))
        with pytest.raises(InvalidState, match="open session"):
            await h.c.unregister_application("app")
        await h.c.close_session(session.id)
        await h.c.unregister_application("app")
        with pytest.raises(NotFound, match=r"^application <app> not found$"):
            h.c.get_application("app")

    run(main)


def test_session_rules() -> None:
    async def main() -> None:
        h = Harness(max_sessions=2)
        await h.start()
        with pytest.raises(NotFound, match="application <nope> not found"):
            await h.c.create_session("s", SessionSpec(application="nope"))
        with pytest.raises(InvalidArgument, match="min_instances"):
            await h.c.create_session("s", SessionSpec(application="app", min_instances=3, max_instances=2))
        s1 = await h.c.create_session("s1", SessionSpec(application="app", common_data=b"cd"))
        with pytest.raises(AlreadyExists):
            await h.c.create_session("s1", SessionSpec(application="app"))
        # open = get-or-create with a spec check
        assert (await h.c.open_session("s1", None)) is s1
        with pytest.raises(InvalidArgument, match="common_data"):
            await h.c.open_session("s1", SessionSpec(application="app", common_data=b"other"))
        with pytest.raises(NotFound):
            await h.c.open_session("s2", None)
        await h.c.open_session("s2", SessionSpec(application="app"))
        with pytest.raises(InvalidState, match="max_sessions=2"):
            await h.c.create_session("s3", SessionSpec(application="app"))
        # closing twice is fine; a closed session cannot be opened or take tasks
        await h.c.close_session("s1")
        assert (await h.c.close_session("s1")).state == SessionState.CLOSED
        with pytest.raises(InvalidState):
            await h.c.open_session("s1", None)
        with pytest.raises(InvalidState, match="closed"):
            await h.c.create_tasks("s1", [b"x"])
        with pytest.raises(InvalidState, match="close it"):
            await h.c.delete_session("s2")
        await h.c.delete_session("s1")
        with pytest.raises(NotFound):
            h.c.get_session_record("s1")

    run(main)


def test_task_ids_and_close_cancels_pending() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app"))
        tasks = await h.c.create_tasks("s", [b"a", b"b", b"c"])
        assert [t.id for t in tasks] == ["1", "2", "3"]
        assert [t.id for t in await h.c.create_tasks("s", [None])] == ["4"]
        session = await h.c.close_session("s")
        assert session.pending == 0 and session.cancelled == 4
        task = await h.c.get_task("s", "2")
        assert task.state == TaskState.CANCELLED
        assert [e.code for e in task.events] == [TaskState.PENDING, TaskState.CANCELLED]

    run(main)


def test_task_runs_on_bound_executor_and_watchers_see_it() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", common_data=b"cd"))
        (task,) = await h.c.create_tasks("s", [b"in"])
        seen: list[TaskState] = []

        async def watch() -> None:
            async for t in h.c.watch_task("s", task.id):
                seen.append(t.state)

        watcher = asyncio.create_task(watch())
        h.schedule()
        message = await h.take()
        assert len(message.create) == 1 and len(message.bind) == 1
        assert message.bind[0].common_data == b"cd" and message.bind[0].application_name == "app"
        executor_id = message.bind[0].executor_id
        h.report(executor_id, X.ExecutorBound, "s")
        message = await h.take()
        assert [(r.executor_id, r.task.task_id, r.task.input) for r in message.run] == [(executor_id, "1", b"in")]
        assert h.c.sessions["s"].session.running == 1
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"out")
        await asyncio.wait_for(watcher, 5)
        assert seen[0] in (TaskState.PENDING, TaskState.RUNNING) and seen[-1] == TaskState.SUCCEED
        done = await h.c.get_task("s", "1")
        assert done.output == b"out" and done.completion_time is not None
        session = h.c.sessions["s"].session
        assert (session.pending, session.running, session.succeed) == (0, 0, 1)

    run(main)


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
def test_a_task_dispatched_as_it_is_created_is_stored_with_each_event_once(engine: str, tmp_path: Any) -> None:
    """The creation's record is taken after the same turn started the task on a bound executor:
    the stored task must hold its running event once, not once from the creation and again from
    the start."""

    async def main() -> None:
        storage = MemoryStorage("memory") if engine == "memory" else SqliteStorage("sqlite", tmp_path / "f.db")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", min_instances=1))
        executor_id = await h.bound_executor("s")
        await h.c.create_tasks("s", [b"a", b"b"])  # the executor is bound: both start at once
        message = await h.take()
        assert [r.task.task_id for r in message.run] == ["1", "2"]
        await h.storage.flush()
        running = [TaskState.PENDING, TaskState.RUNNING]
        for task_id in ("1", "2"):
            stored = await h.storage.get_task("s", task_id)
            assert stored is not None and stored.state == TaskState.RUNNING and stored.attempts == 1
            assert [e.code for e in stored.events] == running, stored.events
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"out")
        done = await h.c.get_task("s", "1")  # a finished task is read back from storage
        assert done.output == b"out" and [e.code for e in done.events] == [*running, TaskState.SUCCEED]
        await h.storage.stop()

    run(main)


def test_failed_task_records_the_message_and_session_goes_on() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"1", b"2"])
        executor_id = await h.bound_executor("s")
        message = await h.take()
        assert [r.task.task_id for r in message.run] == ["1", "2"]  # a window of two per executor
        await h.outcome(executor_id, "s", "1", state=types_pb2.Failed, message="ValueError: boom")
        await h.outcome(executor_id, "s", "2", state=types_pb2.Succeed, output=b"ok")
        failed = await h.c.get_task("s", "1")
        assert failed.state == TaskState.FAILED
        assert failed.events[-1].code == TaskState.FAILED and failed.events[-1].message == "ValueError: boom"
        assert (await h.c.get_task("s", "2")).state == TaskState.SUCCEED

    run(main)


def test_retryable_failure_requeues_until_max_attempts() -> None:
    async def main() -> None:
        h = Harness(max_task_attempts=2)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"x"])
        executor_id = await h.bound_executor("s")
        await h.take()
        await h.outcome(executor_id, "s", "1", state=types_pb2.Failed, retryable=True, message="service died")
        task = await h.c.get_task("s", "1")
        assert task.state == TaskState.RUNNING  # requeued and handed out again at once
        assert any("retrying" in (e.message or "") for e in task.events)
        await h.take()
        await h.outcome(executor_id, "s", "1", state=types_pb2.Failed, retryable=True, message="service died")
        assert task.state == TaskState.FAILED and "after 2 attempt(s)" in (task.events[-1].message or "")

    run(main)


def test_bind_failures_give_events_then_give_up() -> None:
    async def main() -> None:
        h = Harness(max_bind_failures=2)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"x"])
        for _ in range(2):
            h.schedule()
            message = await h.take()
            executor_id = message.bind[0].executor_id
            h.report(executor_id, X.ExecutorIdle, "s", "service exited with code 1")
        rec = h.c.sessions["s"]
        codes = [e.code for e in rec.session.events]
        assert codes == [EVENT_SESSION_BIND_FAILED, EVENT_SESSION_BIND_FAILED, EVENT_SESSION_BIND_GIVEN_UP]
        assert "service exited with code 1" in (rec.session.events[0].message or "")
        # nothing waits forever: the pending task is failed with the reason
        assert (await h.c.get_task("s", "1")).state == TaskState.FAILED
        h.schedule()
        assert all(not m.bind for m in [h.link._pending])

    run(main)


def test_lost_executor_requeues_its_tasks() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"x"])
        executor_id = await h.bound_executor("s")
        await h.take()
        h.report(executor_id, X.ExecutorIdle, None, "service exited with signal 9")
        assert h.c.executors[executor_id].executor.state == ExecutorState.IDLE
        task = await h.c.get_task("s", "1")
        assert task.state == TaskState.PENDING and task.attempts == 1

    run(main)


def test_recovery_requeues_running_tasks_and_keeps_outputs() -> None:
    async def main() -> None:
        storage = MemoryStorage("memory")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"1", b"2", b"3"])
        executor_id = await h.bound_executor("s")
        await h.take()
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"one")
        await storage.stop()

        again = Controller(storage, ControllerSettings())
        await storage.start()
        await again.recover()
        rec = again.sessions["s"]
        done = await again.get_task("s", "1")  # finished: read from storage, not kept in memory
        assert done.output == b"one" and done.state == TaskState.SUCCEED and "1" not in rec.tasks
        assert [rec.tasks[t].state for t in ("2", "3")] == [TaskState.PENDING, TaskState.PENDING]
        assert list(rec.pending) == ["2", "3"]
        assert (rec.session.succeed, rec.session.pending, rec.session.running) == (1, 2, 0)
        assert [t.id for t in await again.create_tasks("s", [b"4"])] == ["4"]

    run(main)


def test_pipeline_depth_follows_task_duration() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        rec = h.c.sessions["s"]
        assert h.c.core.window(rec) == 2  # nothing known yet: one running, one queued
        rec.task_seconds = 0.0001  # short tasks: a deep pipeline, capped by the setting
        assert h.c.core.window(rec) == h.c.settings.executor_window
        await h.c.create_tasks("s", [b"x"] * 100)
        executor_id = await h.bound_executor("s")
        message = await h.take()
        assert len(message.run) == h.c.settings.executor_window  # many tasks in one message
        rec.task_seconds = 5.0  # long tasks: never more than one waiting behind the running one
        assert h.c.core.window(rec) == 2
        assert len(h.c.executors[executor_id].inflight) == h.c.settings.executor_window

    run(main)


def test_limits_name_the_limit() -> None:
    async def main() -> None:
        h = Harness(max_task_size=10, max_common_data_size=4, max_pending_tasks=3)
        await h.start()
        with pytest.raises(InvalidArgument, match=r"common data is 5 bytes.*max_common_data_size\) is 4"):
            await h.c.create_session("s", SessionSpec(application="app", common_data=b"12345"))
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        with pytest.raises(InvalidArgument, match=r"task input #2 is 11 bytes.*max_task_size\) is 10"):
            await h.c.create_tasks("s", [b"ok", b"x" * 11])
        assert h.c.sessions["s"].tasks == {}  # nothing half-written
        await h.c.create_tasks("s", [b"a", b"b"])
        with pytest.raises(InvalidState, match=r"2 pending tasks.*max_pending_tasks\) of 3"):
            await h.c.create_tasks("s", [b"c", b"d"])
        executor_id = await h.bound_executor("s")
        await h.take()
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"y" * 11)
        task = await h.c.get_task("s", "1")
        assert task.state == TaskState.FAILED and "max_task_size" in (task.events[-1].message or "")

    run(main)


def test_close_unbinds_at_once_and_cancels_tasks_returned_unstarted() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"1", b"2", b"3"])
        executor_id = await h.bound_executor("s")
        assert [r.task.task_id for r in (await h.take()).run] == ["1", "2"]
        await h.c.close_session("s")
        assert [u.executor_id for u in (await h.take()).unbind] == [executor_id]
        assert (await h.c.get_task("s", "3")).state == TaskState.CANCELLED  # was pending
        await h.outcome(executor_id, "s", "2", state=types_pb2.Failed, retryable=True, not_started=True)
        task = await h.c.get_task("s", "2")
        assert task.state == TaskState.CANCELLED and task.attempts == 0
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"done")  # the running one finishes
        assert (await h.c.get_task("s", "1")).output == b"done"

    run(main)


def test_task_returned_unstarted_is_queued_again_without_spending_an_attempt() -> None:
    async def main() -> None:
        h = Harness(max_task_attempts=1)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"1", b"2"])
        executor_id = await h.bound_executor("s")
        await h.take()
        await h.outcome(executor_id, "s", "2", state=types_pb2.Failed, retryable=True, not_started=True)
        task = await h.c.get_task("s", "2")
        assert task.state == TaskState.RUNNING and task.attempts == 1  # handed out again at once

    run(main)


def test_silent_node_is_forgotten_and_its_running_tasks_requeued() -> None:
    async def main() -> None:
        h = Harness(node_lost_ms=1_000)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"x"])
        executor_id = await h.bound_executor("s")
        await h.take()
        assert (await h.c.get_task("s", "1")).state == TaskState.RUNNING
        assert h.node is not None
        h.c.handle(CheckNodes(h.node.node.last_heartbeat_time + 500))  # not silent for long enough
        assert executor_id in h.c.executors
        h.c.handle(CheckNodes(h.node.node.last_heartbeat_time + 1_000))
        assert executor_id not in h.c.executors
        task = await h.c.get_task("s", "1")
        assert task.state == TaskState.PENDING and "lost" in (task.events[-1].message or "")
        assert h.node.node.state.name == "UNKNOWN"

    run(main)


def test_session_weight_reaches_the_scheduler_and_survives_a_restart() -> None:
    async def main() -> None:
        storage = MemoryStorage("memory")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app"))
        await h.c.set_session_weight("s", 3.0)
        (view,) = h.c.core.fleet.snapshot().sessions
        assert view.weight == 3.0
        for bad in (0.0, -1.0, float("nan"), 1e7):
            with pytest.raises(InvalidArgument, match="0 < weight <= 1e6"):
                await h.c.set_session_weight("s", bad)
        await storage.stop()
        again = Controller(storage, ControllerSettings())
        await storage.start()
        await again.recover()
        assert again.sessions["s"].session.spec.weight == 3.0

    run(main)


def test_closing_a_session_while_its_executor_binds_unbinds_it_and_it_never_counts_as_bound() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", min_instances=1))
        h.schedule()
        executor_id = (await h.take()).bind[0].executor_id
        await h.c.close_session("s")
        assert [u.executor_id for u in (await h.take()).unbind] == [executor_id]
        assert h.c.executors[executor_id].executor.state == ExecutorState.UNBINDING
        # The node may still report the bind it finished before it saw the unbind: ignored.
        h.report(executor_id, X.ExecutorBound, "s")
        assert h.c.executors[executor_id].executor.state == ExecutorState.UNBINDING
        assert executor_id not in h.c.sessions["s"].executors
        h.report(executor_id, X.ExecutorIdle)
        assert h.c.executors[executor_id].executor.state == ExecutorState.IDLE

    run(main)


class FlakyStorage(MemoryStorage):
    """Memory storage whose next commit fails when armed (as a full disk would)."""

    fail_next = False

    def _apply(self, batch: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("No space left on device")
        super()._apply(batch)


def test_a_close_that_fails_to_commit_changes_nothing() -> None:
    async def main() -> None:
        storage = FlakyStorage("memory")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app"))
        await h.c.create_tasks("s", [b"1", b"2"])
        storage.fail_next = True
        with pytest.raises(Internal, match="No space left on device"):
            await h.c.close_session("s")
        rec = h.c.sessions["s"]
        assert rec.session.state == SessionState.OPEN and rec.session.completion_time is None
        assert [(await h.c.get_task("s", t)).state for t in ("1", "2")] == [TaskState.PENDING] * 2
        assert (rec.session.pending, rec.session.cancelled, list(rec.pending)) == (2, 0, ["1", "2"])
        # It still takes tasks, and a second close works.
        await h.c.create_tasks("s", [b"3"])
        await h.c.close_session("s")
        assert rec.session.state == SessionState.CLOSED and rec.session.cancelled == 3
        stored = await storage.load()
        assert [s.state for s in stored.sessions] == [SessionState.CLOSED]
        assert {t.id: t.state for t in stored.tasks} == {str(i): TaskState.CANCELLED for i in (1, 2, 3)}

    run(main)


def test_tasks_whose_creation_fails_to_commit_are_forgotten_even_if_dispatched() -> None:
    async def main() -> None:
        storage = FlakyStorage("memory")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", min_instances=1, max_instances=1))
        executor_id = await h.bound_executor("s")
        storage.fail_next = True
        with pytest.raises(Internal, match="could not be stored"):
            await h.c.create_tasks("s", [b"a", b"b"])
        dispatched = (await h.take()).run  # it went out before the commit failed
        assert [r.task.task_id for r in dispatched] == ["1", "2"]
        rec = h.c.sessions["s"]
        assert (rec.tasks, list(rec.pending), rec.session.pending, rec.session.running) == ({}, [], 0, 0)
        assert h.c.executors[executor_id].inflight == {}
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"late")  # ignored
        assert rec.tasks == {} and rec.session.succeed == 0
        assert (await storage.load()).tasks == []
        # The next tasks get new ids and run.
        [task] = await h.c.create_tasks("s", [b"c"])
        assert task.id == "3" and task.state == TaskState.RUNNING

    run(main)


def test_finished_tasks_leave_memory_and_are_read_from_storage() -> None:
    async def main() -> None:
        storage = MemoryStorage("memory")
        h = Harness(storage)
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", max_instances=1))
        await h.c.create_tasks("s", [b"1", b"2", b"3"])
        executor_id = await h.bound_executor("s")
        assert [r.task.task_id for r in (await h.take()).run] == ["1", "2"]
        await h.outcome(executor_id, "s", "1", state=types_pb2.Succeed, output=b"one")
        rec = h.c.sessions["s"]
        assert sorted(rec.tasks) == ["2", "3"]  # the running ones stay; the finished one is stored only
        assert (await h.c.get_task("s", "1")).output == b"one"
        listed = await h.c.list_tasks("s")
        assert [(t.id, t.state) for t in listed] == [
            ("1", TaskState.SUCCEED),
            ("2", TaskState.RUNNING),  # the live state, newer than the stored Pending
            ("3", TaskState.RUNNING),  # handed to the executor when task 1 finished
        ]
        watch = h.c.watch_session("s", include_completed=True)
        assert [t.id for t in await anext(watch)] == ["1"]  # the replay comes from storage
        await h.c.close_session("s")
        await h.outcome(executor_id, "s", "2", state=types_pb2.Succeed, output=b"two")
        await h.outcome(executor_id, "s", "3", state=types_pb2.Failed, message="no")
        assert rec.tasks == {}  # a closed, finished session holds no task in memory
        assert [t.id async for batch in watch for t in batch] == ["2", "3"]
        with pytest.raises(NotFound):
            await h.c.get_task("s", "4")

        # A restart loads what open sessions still need: nothing of this closed one.
        await storage.stop()
        again = Controller(storage, ControllerSettings())
        await storage.start()
        await again.recover()
        assert again.sessions["s"].tasks == {}
        assert (again.sessions["s"].session.succeed, again.sessions["s"].session.failed) == (2, 1)
        assert (await again.get_task("s", "3")).state == TaskState.FAILED

    run(main)


def test_a_task_watch_ends_only_after_it_sent_a_final_state() -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        await h.c.create_session("s", SessionSpec(application="app", min_instances=1))
        [task] = await h.c.create_tasks("s", [b"x"])
        watch = h.c.watch_task("s", task.id)
        assert (await anext(watch)).state == TaskState.PENDING
        executor_id = await h.bound_executor("s")
        await h.storage.flush()  # the Running transition is committed and published
        running = await anext(watch)
        sent = running.state  # what a server would send now
        # The task finishes before the watcher asks for more: the same object is Succeed now.
        await h.outcome(executor_id, "s", task.id, state=types_pb2.Succeed, output=b"done")
        assert sent == TaskState.RUNNING
        final = await anext(watch)  # not the end of the stream: the final state still comes
        assert final.state == TaskState.SUCCEED and final.output == b"done"
        assert await anext(watch, None) is None

    run(main)


def test_a_session_watch_sends_every_finished_task_in_order_in_bounded_batches() -> None:
    async def main() -> None:
        watch = SessionWatch()
        tasks = [Task(session_id="s", id=str(i), state=TaskState.SUCCEED) for i in range(1, 8)]
        waiting = asyncio.create_task(watch.take(3))
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing finished yet: the sender waits
        watch.add(tasks[:2])
        assert [t.id for t in await waiting] == ["1", "2"]
        watch.add(tasks[2:6])
        watch.add(tasks[6:])
        watch.end()  # what was added before the end still goes out, then the watch ends
        assert [t.id for t in await watch.take(3)] == ["3", "4", "5"]
        assert [t.id for t in await watch.take(3)] == ["6", "7"]
        assert await watch.take(3) is None

    run(main)
