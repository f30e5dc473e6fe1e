"""The session manager's pure core: events in, effects out, with no storage, network or event loop.

Each test plays the controller's part by hand: it reads the effects, decides how each commit
ends, and hands back the commit's ``then`` (or ``undo``) event.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame.errors import FlameError, InvalidArgument, InvalidState
from flame.protocol import backend_pb2, types_pb2
from flame.session_manager import effects as fx
from flame.session_manager.core import ControllerSettings, Core
from flame.session_manager.scheduler import plan
from flame.session_manager.storage import PutTask, UpdateTask
from flame.types import ApplicationSpec, SessionSpec, SessionState, TaskState

LINK = object()  # stands in for a node's stream: the core only hands it back in effects


def commits(effects: list[Any]) -> list[fx.Commit]:
    return [e for e in effects if isinstance(e, fx.Commit)]


def settle(core: Core, effects: list[Any], *, fail: bool = False) -> list[Any]:
    """End every commit in ``effects`` (all stored, or all failed) and return what followed, recursively."""
    followed: list[Any] = []
    for commit in commits(effects):
        event = commit.undo if fail else commit.then
        if event is not None:
            more = core.handle(event)
            followed += more
            followed += settle(core, more, fail=fail)
    return followed


def admitted(core: Core, event: fx.Event) -> Any:
    """Handle a request whose commits all succeed; return the core's answer."""
    effects = core.handle(event)
    settle(core, effects)
    return effects.value


def cluster(slots: int = 2) -> Core:
    core = Core(ControllerSettings())
    admitted(core, fx.RegisterApplication("app", ApplicationSpec(command="/bin/true")))
    register = backend_pb2.RegisterNode(name="n1", max_executors=slots)
    register.capacity.cpu, register.capacity.memory = slots, slots * 1024**3
    core.handle(fx.NodeConnected(register, LINK))
    return core


def bind_all(core: Core) -> list[str]:
    """Run a scheduling cycle and report every executor it binds as Bound; return their ids."""
    effects = core.handle(fx.ApplyDecision(plan(core.fleet.snapshot())))
    bound = [e.executor_id for e in effects if isinstance(e, fx.BindOnNode)]
    reports = [backend_pb2.ExecutorReport(executor_id=e, state=types_pb2.ExecutorBound) for e in bound]
    core.handle(fx.NodeMessage("n1", backend_pb2.AgentMessage(executors=reports)))
    return bound


def state_of(core: Core) -> Any:
    """Everything a commit's outcome could have changed, as plain comparable values."""
    return copy.deepcopy((core.applications, core.sessions, core.executors))


def test_requests_change_nothing_until_their_commit_is_stored() -> None:
    core = Core(ControllerSettings())
    effects = core.handle(fx.RegisterApplication("app", ApplicationSpec(command="/bin/true")))
    [commit] = effects
    assert commit.ack and isinstance(commit.then, fx.ApplicationStored) and core.applications == {}
    core.handle(commit.then)
    assert list(core.applications) == ["app"]
    effects = core.handle(fx.CreateSession("s", SessionSpec(application="app")))
    assert core.sessions == {} and effects.value.id == "s"
    settle(core, effects, fail=True)  # undo: there is none, nothing was applied
    assert core.sessions == {}
    settle(core, effects)
    assert core.sessions["s"].session.state == SessionState.OPEN


def test_a_refused_request_raises_and_asks_for_nothing() -> None:
    core = cluster()
    admitted(core, fx.CreateSession("s", SessionSpec(application="app")))
    before = state_of(core)
    with pytest.raises(InvalidArgument, match="invalid application name"):
        core.handle(fx.RegisterApplication("bad name!", ApplicationSpec()))
    with pytest.raises(InvalidArgument, match="max_task_size"):
        core.handle(fx.CreateTasks("s", [b"x" * (core.settings.max_task_size + 1)]))
    with pytest.raises(InvalidState, match="open session"):
        core.handle(fx.UnregisterApplication("app"))
    assert state_of(core) == before and core.out == []


def test_a_close_whose_commit_fails_leaves_the_state_as_it_was() -> None:
    core = cluster()
    admitted(core, fx.CreateSession("s", SessionSpec(application="app")))
    settle(core, core.handle(fx.CreateTasks("s", [b"1", b"2"])))
    before = state_of(core)
    effects = core.handle(fx.CloseSession("s"))
    [commit] = commits(effects)
    written = {r.task_id: r.state for r in commit.records if isinstance(r, UpdateTask)}
    assert written == {"1": TaskState.CANCELLED, "2": TaskState.CANCELLED}
    with pytest.raises(InvalidState, match="closed"):  # no tasks while the close commits
        core.handle(fx.CreateTasks("s", [b"3"]))
    assert not [e for e in settle(core, effects, fail=True) if isinstance(e, fx.Notify)]
    assert state_of(core) == before
    # The next close goes through: cancelled in memory exactly as written, then announced.
    effects = core.handle(fx.CloseSession("s"))
    [notify] = [e for e in settle(core, effects) if isinstance(e, fx.Notify)]
    assert [(t.id, t.state) for t in notify.tasks] == [("1", TaskState.CANCELLED), ("2", TaskState.CANCELLED)]
    assert core.sessions["s"].session.state == SessionState.CLOSED and core.sessions["s"].tasks == {}


def test_created_tasks_run_at_once_and_are_forgotten_if_their_creation_is_not_stored() -> None:
    core = cluster()
    admitted(core, fx.CreateSession("s", SessionSpec(application="app", min_instances=1, max_instances=1)))
    [executor] = bind_all(core)
    effects = core.handle(fx.CreateTasks("s", [b"a", b"b"]))
    kinds = [type(e) for e in effects]
    # The creation's put comes last: storage takes it as the task then is, already started.
    assert kinds[:3] == [fx.RunOnNode, fx.Commit, fx.Commit] and fx.Notify not in kinds
    run, running, creation = effects[0], effects[1], effects[2]
    assert creation.ack and all(isinstance(r, PutTask) for r in creation.records)
    assert (run.link, run.executor_id, [t.id for t in run.tasks]) == (LINK, executor, ["1", "2"])
    assert isinstance(running.then, fx.TasksStored)
    settle(core, effects, fail=True)
    rec = core.sessions["s"]
    assert (rec.tasks, list(rec.pending), rec.session.pending, rec.session.running) == ({}, [], 0, 0)
    assert core.executors[executor].inflight == {}


def test_watchers_hear_of_an_outcome_only_from_the_commit_that_stored_it() -> None:
    core = cluster()
    admitted(core, fx.CreateSession("s", SessionSpec(application="app", min_instances=1, max_instances=1)))
    [executor] = bind_all(core)
    settle(core, core.handle(fx.CreateTasks("s", [b"a"])))
    outcome = backend_pb2.TaskOutcome(
        executor_id=executor, session_id="s", task_id="1", state=types_pb2.Succeed, output=b"A"
    )
    effects = core.handle(fx.NodeMessage("n1", backend_pb2.AgentMessage(outcomes=[outcome])))
    assert not [e for e in effects if isinstance(e, fx.Notify)]
    [commit] = commits(effects)
    assert [(r.task_id, r.state, r.output) for r in commit.records] == [("1", TaskState.SUCCEED, b"A")]
    assert "1" in core.sessions["s"].tasks  # kept until stored
    [notify] = [e for e in settle(core, effects) if isinstance(e, fx.Notify)]
    assert [t.id for t in notify.tasks] == ["1"] and core.sessions["s"].tasks == {}


# ---- any sequence of events, any commit outcome ------------------------------------------------

EVENTS = st.sampled_from(["create", "cancel", "close", "schedule", "succeed", "fail", "lose", "weight"])


class Stored:
    """Storage as the property test sees it: which state each task has there."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.tasks: dict[str, TaskState] = {}

    def perform(self, effects: list[Any], fail: bool) -> None:
        """As the controller would: a commit lands (or not), then its then (or undo) runs."""
        for effect in effects:
            if isinstance(effect, fx.Notify):
                for task in effect.tasks:
                    assert self.tasks.get(task.id) == task.state, f"task {task.id} announced before it was stored"
            if not isinstance(effect, fx.Commit):
                continue
            if not fail:
                for r in effect.records:
                    if isinstance(r, PutTask):
                        self.tasks[r.task.id] = r.task.state
                    elif isinstance(r, UpdateTask):
                        self.tasks[r.task_id] = r.state
            event = effect.undo if fail else effect.then
            if event is not None:
                self.perform(self.core.handle(event), fail)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(EVENTS, st.booleans()), min_size=1, max_size=40))
def test_any_run_of_events_keeps_the_counters_true_and_announces_only_what_was_stored(
    steps: list[tuple[str, bool]],
) -> None:
    core = cluster(slots=2)
    admitted(core, fx.CreateSession("s", SessionSpec(application="app", max_instances=2)))
    storage = Stored(core)
    for step, commit_fails in steps:
        rec = core.sessions["s"]
        before = state_of(core) if step in ("close", "weight") else None
        try:
            effects = _event(core, step)
        except FlameError:
            continue
        storage.perform(effects, commit_fails)
        if commit_fails and before is not None:
            assert state_of(core) == before, f"a failed {step} commit changed the state"
        session, live = rec.session, list(rec.tasks.values())
        assert session.pending == sum(t.state == TaskState.PENDING for t in live) == len(rec.pending)
        assert session.running == sum(t.state == TaskState.RUNNING for t in live)
        assert all(not t.state.is_final or storage.tasks.get(t.id) != t.state for t in live), "stored final tasks stay"


def _event(core: Core, step: str) -> fx.Effects:
    rec = core.sessions["s"]
    if step == "create":
        return core.handle(fx.CreateTasks("s", [b"x", b"y"]))
    if step == "cancel":
        return core.handle(fx.CancelTasks("s", list(rec.pending)[:1]))
    if step == "close":
        return core.handle(fx.CloseSession("s"))
    if step == "weight":
        return core.handle(fx.SetSessionWeight("s", 2.0))
    if step == "schedule":
        effects = core.handle(fx.ApplyDecision(plan(core.fleet.snapshot())))
        bound = [e.executor_id for e in effects if isinstance(e, fx.BindOnNode)]
        reports = [backend_pb2.ExecutorReport(executor_id=e, state=types_pb2.ExecutorBound) for e in bound]
        effects += core.handle(fx.NodeMessage("n1", backend_pb2.AgentMessage(executors=reports)))
        return effects
    if step == "lose":
        running = [ex for ex in core.executors.values() if ex.inflight]
        if not running:
            raise InvalidState("no executor runs a task")
        report = backend_pb2.ExecutorReport(executor_id=running[0].id, state=types_pb2.ExecutorIdle, message="died")
        return core.handle(fx.NodeMessage("n1", backend_pb2.AgentMessage(executors=[report])))
    outcomes = [
        backend_pb2.TaskOutcome(
            executor_id=ex.id,
            session_id="s",
            task_id=task_id,
            state=types_pb2.Succeed if step == "succeed" else types_pb2.Failed,
            retryable=step == "fail",
        )
        for ex in core.executors.values()
        for task_id in list(ex.inflight)[:1]
    ]
    if not outcomes:
        raise InvalidState("nothing is running")
    return core.handle(fx.NodeMessage("n1", backend_pb2.AgentMessage(outcomes=outcomes)))
