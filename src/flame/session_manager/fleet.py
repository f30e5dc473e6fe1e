"""The core's executor and node half: what executor managers report, and scheduler decisions.

Part of the pure core (flame.session_manager.core): it changes the core's state and asks for
effects (commands down a node's link, commits), and does no I/O. The core holds the fleet and
hands it the events about nodes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from flame.errors import InvalidState
from flame.protocol import backend_pb2, resreq_from_pb
from flame.session_manager import effects as fx
from flame.session_manager import states
from flame.session_manager.appcheck import task_timeout_label, unsupported_shim
from flame.session_manager.records import ExecutorRecord, NodeRecord, SessionRecord
from flame.session_manager.scheduler import (
    BindExecutor,
    CreateExecutor,
    ExecutorView,
    NodeView,
    ReleaseExecutor,
    SessionView,
    Snapshot,
    UnbindExecutor,
)
from flame.types import (
    EVENT_SESSION_BIND_FAILED,
    EVENT_SESSION_BIND_GIVEN_UP,
    Event,
    Executor,
    ExecutorState,
    Node,
    NodeInfo,
    NodeState,
    SessionState,
    Task,
    TaskState,
    now_ms,
)

if TYPE_CHECKING:
    from flame.session_manager.core import Core

logger = logging.getLogger(__name__)

_SUCCEED = int(TaskState.SUCCEED)
_EXECUTOR_STATES = frozenset(int(s) for s in ExecutorState)
_FINAL_STATES = frozenset({int(TaskState.SUCCEED), int(TaskState.FAILED)})
X = ExecutorState


class Fleet:
    def __init__(self, core: Core) -> None:
        self.c = core

    # ---- nodes ----------------------------------------------------------------------------

    def node_connected(self, event: fx.NodeConnected) -> NodeRecord:
        register, link = event
        name = register.name
        capacity = resreq_from_pb(register.capacity)
        rec = self.c.nodes.get(name)
        if rec is None:
            rec = NodeRecord(Node(name=name, capacity=capacity, allocatable=capacity))
            self.c.nodes[name] = rec
        elif rec.link is not None and rec.link is not link:
            self.c.out.append(fx.CloseLink(rec.link))  # a newer stream from the same node replaces the old one
        node = rec.node
        node.capacity = node.allocatable = capacity
        node.info = NodeInfo(arch=register.info.arch, os=register.info.os)
        node.addresses = [(a.type, a.address) for a in register.addresses]
        node.max_executors = register.max_executors
        node.state = NodeState.READY
        node.last_heartbeat_time = now_ms()
        rec.link = link
        self.c.out.append(fx.Registered(link, self.c.settings.heartbeat_interval_ms))
        self._reconcile(rec, register.executors)
        logger.info("node %s connected (%s, %d executor slots)", name, capacity, register.max_executors)
        self.c.kick()
        return rec

    def _reconcile(self, rec: NodeRecord, reported: list[backend_pb2.ExecutorReport]) -> None:
        """Keep executors both sides know; release the agent's unknown ones; forget ours it lost."""
        seen = set()
        for report in reported:
            ex = self.c.executors.get(report.executor_id)
            if ex is None or ex.executor.node != rec.node.name:
                if ExecutorState(report.state) != X.RELEASED:
                    assert rec.link is not None
                    self.c.out.append(fx.ReleaseOnNode(rec.link, report.executor_id))
                continue
            seen.add(ex.id)
            self.executor_report(rec, report)
        for executor_id in list(rec.executors - seen):
            self._forget(self.c.executors[executor_id], "its node reconnected without it")

    def node_disconnected(self, event: fx.NodeDisconnected) -> None:
        rec = self.c.nodes.get(event.node)
        if rec is None or rec.link is not event.link:
            return
        rec.link = None
        rec.node.state = NodeState.NOT_READY
        logger.info("node %s disconnected; waiting %d ms for it to return", rec.node.name, self.c.settings.node_lost_ms)

    def node_message(self, event: fx.NodeMessage) -> None:
        """One message of a node's stream: a heartbeat, executor reports and task outcomes."""
        node = self.c.nodes.get(event.node)
        if node is None:  # forgotten (lost, or its pod went) while the message travelled
            return
        message = event.message
        node.node.last_heartbeat_time = now_ms()
        for report in message.executors:
            if report.state not in _EXECUTOR_STATES:
                logger.warning("node %s: ignoring a report of executor state %d", event.node, report.state)
                continue
            try:
                self.executor_report(node, report)
            except InvalidState as exc:  # a report out of order: the agent is confused, we need not be
                logger.warning("node %s: ignoring a report for executor %s: %s", event.node, report.executor_id, exc)
        outcomes = [o for o in message.outcomes if o.state in _FINAL_STATES]
        if len(outcomes) < len(message.outcomes):
            logger.warning("node %s: ignoring outcomes that are neither Succeed nor Failed", event.node)
        if outcomes:
            self.task_outcomes(outcomes)

    def check_nodes(self, event: fx.CheckNodes) -> None:
        """Forget nodes that stopped reporting; their running tasks go back to Pending."""
        for name, rec in list(self.c.nodes.items()):
            silent = event.now - rec.node.last_heartbeat_time
            if silent < self.c.settings.node_lost_ms:
                continue
            if rec.link is not None:
                self.c.out.append(fx.CloseLink(rec.link))
                rec.link = None
            if rec.node.state != NodeState.UNKNOWN:
                logger.warning("node %s lost (silent for %d ms); forgetting its executors", name, silent)
                rec.node.state = NodeState.NOT_READY
                rec.node.state = states.check(
                    states.NODE_TRANSITIONS, rec.node.state, NodeState.UNKNOWN, f"node {name}"
                )
            for executor_id in list(rec.executors):
                self._forget(self.c.executors[executor_id], f"node {name} was lost")

    def lose_node(self, event: fx.LoseNode) -> None:
        """Forget a node now (a provider saw its pod go): its running tasks go back to Pending."""
        name, reason = event
        rec = self.c.nodes.pop(name, None)
        if rec is None:
            return
        if rec.link is not None:
            self.c.out.append(fx.CloseLink(rec.link))
            rec.link = None
        logger.info("node %s gone: %s; forgetting its executors", name, reason)
        for executor_id in list(rec.executors):
            self._forget(self.c.executors[executor_id], f"node {name} is gone: {reason}")
        self.c.kick()

    # ---- executors ------------------------------------------------------------------------

    def _set_state(self, ex: ExecutorRecord, new: ExecutorState) -> None:
        ex.executor.state = states.check(states.EXECUTOR_TRANSITIONS, ex.executor.state, new, f"executor {ex.id}")
        ex.idle_since = now_ms()

    def _detach(self, ex: ExecutorRecord) -> SessionRecord | None:
        """Unlink the executor from its session; return that session."""
        sid = ex.executor.session_id
        ex.executor.session_id = None
        rec = self.c.sessions.get(sid) if sid else None
        if rec is not None:
            rec.executors.discard(ex.id)
        return rec

    def _requeue_inflight(self, ex: ExecutorRecord, rec: SessionRecord | None, reason: str) -> None:
        """Tasks the executor held and never finished: retry them (or fail after max attempts).

        Call after the executor was detached from ``rec``, so they are not handed back to it.
        """
        changed: list[Task] = []
        if rec is not None:
            for task_id in sorted(ex.inflight, key=int, reverse=True):
                task = rec.tasks.get(task_id)
                if task is not None and task.state == TaskState.RUNNING:
                    self._retry_or_fail(rec, task, reason)
                    changed.append(task)
        ex.inflight.clear()
        if rec is not None and changed:
            self.c.commit_and_publish(rec, changed)
            self.c.dispatch(rec)

    def _give_back(self, rec: SessionRecord, task: Task) -> None:
        """A task its executor returned unstarted: first in line again, no attempt spent."""
        task.attempts -= 1
        if rec.session.state == SessionState.OPEN:
            self.c.move_task(rec, task, TaskState.PENDING, "returned unstarted by its executor; queued again")
            rec.pending.appendleft(task.id)
        else:
            self.c.finish_task(rec, task, TaskState.CANCELLED, "session closed before the task started")

    def session_closed(self, rec: SessionRecord) -> None:
        """Unbind the closed session's executors now: each finishes the task it is running
        and hands back the ones it had queued, which are cancelled. One still binding abandons
        the bind (its node stops the service without entering the session, or right after)."""
        for executor_id in list(rec.executors):
            ex = self.c.executors[executor_id]
            if ex.executor.state in (X.BOUND, X.BINDING):
                self._unbind(ex)

    def _retry_or_fail(self, rec: SessionRecord, task: Task, reason: str) -> None:
        if task.attempts < self.c.settings.max_task_attempts and rec.session.state == SessionState.OPEN:
            self.c.move_task(rec, task, TaskState.PENDING, f"retrying (attempt {task.attempts + 1}): {reason}")
            rec.pending.appendleft(task.id)
        else:
            self.c.finish_task(rec, task, TaskState.FAILED, f"failed after {task.attempts} attempt(s): {reason}")

    def _forget(self, ex: ExecutorRecord, reason: str) -> None:
        self._requeue_inflight(ex, self._detach(ex), f"executor {ex.id} lost: {reason}")
        self.c.executors.pop(ex.id, None)
        node = self.c.nodes.get(ex.executor.node)
        if node is not None:
            node.executors.discard(ex.id)
        logger.info("executor %s forgotten: %s", ex.id, reason)
        self.c.kick()

    def executor_report(self, node: NodeRecord, report: backend_pb2.ExecutorReport) -> None:
        ex = self.c.executors.get(report.executor_id)
        if ex is None:
            if ExecutorState(report.state) != X.RELEASED and node.link is not None:
                self.c.out.append(fx.ReleaseOnNode(node.link, report.executor_id))
            return
        if report.HasField("log_file"):
            ex.executor.log_file = report.log_file
        state = ExecutorState(report.state)
        current = ex.executor.state
        message = report.message if report.HasField("message") else None
        if state == X.BOUND and current == X.BINDING:
            self._bound(ex)
        elif state == X.IDLE and current == X.BINDING and message:
            self._bind_failed(ex, message)
        elif state == X.IDLE and current in (X.BOUND, X.UNBINDING, X.VOID):
            if current == X.BOUND:
                logger.warning("executor %s stopped unexpectedly: %s", ex.id, message or "no reason given")
            rec = self._detach(ex)
            self._set_state(ex, X.IDLE)
            self._requeue_inflight(ex, rec, message or "the service stopped")
            logger.info("executor %s idle", ex.id)
            self.c.kick()
        elif state == X.RELEASED:
            self._requeue_inflight(ex, self._detach(ex), message or "executor released")
            self.c.executors.pop(ex.id, None)
            node.executors.discard(ex.id)
            logger.info("executor %s released", ex.id)
            self.c.kick()

    def _bound(self, ex: ExecutorRecord) -> None:
        self._set_state(ex, X.BOUND)
        rec = self.c.sessions.get(ex.executor.session_id or "")
        logger.info("executor %s bound to session %s", ex.id, ex.executor.session_id)
        if rec is None or rec.session.state != SessionState.OPEN:
            self._unbind(ex)
            return
        self.c.dispatch(rec, {ex.id})

    def _bind_failed(self, ex: ExecutorRecord, message: str) -> None:
        rec = self._detach(ex)
        self._set_state(ex, X.IDLE)
        if rec is None:
            return
        rec.bind_failures += 1
        logger.warning("executor %s failed to bind session %s: %s", ex.id, rec.id, message)
        self.c.session_event(rec, EVENT_SESSION_BIND_FAILED, f"executor {ex.id} failed to bind: {message}")
        if rec.bind_failures >= self.c.settings.max_bind_failures and not rec.gave_up:
            rec.gave_up = True
            reason = f"gave up after {rec.bind_failures} failed binds; last error: {message}"
            self.c.session_event(rec, EVENT_SESSION_BIND_GIVEN_UP, reason)
            if not rec.executors:
                self.c.commit_and_publish(rec, self.c.drop_pending(rec, TaskState.FAILED, reason))
        self.c.kick()

    def task_outcomes(self, outcomes: list[backend_pb2.TaskOutcome]) -> None:
        """Apply finished tasks, store and announce them (once committed), refill the freed executors."""
        core = self.c
        executors, sessions = core.executors, core.sessions
        limit = core.settings.max_task_size
        changed: defaultdict[str, list[Task]] = defaultdict(list)
        freed: defaultdict[str, set[str]] = defaultdict(set)
        at, now = now_ms(), time.monotonic()  # one reading of each clock per message
        succeeded = Event(_SUCCEED, None, at)  # frozen: one serves every task of the message
        for outcome in outcomes:  # per task: names looked up once above, each field read once
            executor_id, session_id, task_id = outcome.executor_id, outcome.session_id, outcome.task_id
            ex = executors.get(executor_id)
            rec = sessions.get(session_id)
            if ex is None or rec is None or task_id not in ex.inflight:
                continue  # stale: the executor or session is gone, or the task was requeued
            core.task_done(rec, ex, ex.inflight.pop(task_id), now, at)
            freed[session_id].add(executor_id)
            task = rec.tasks[task_id]  # in flight on its executor, so Running
            if outcome.state == _SUCCEED:
                output = outcome.output if outcome.HasField("output") else None
                if output is None or len(output) <= limit:
                    core.succeed(rec, task, output, at, succeeded)
                else:
                    core.finish_task(
                        rec,
                        task,
                        TaskState.FAILED,
                        f"the service returned {len(output)} bytes; the limit "
                        f"(cluster.limits.max_task_size) is {limit} bytes",
                        at=at,
                    )
            else:
                message = outcome.message if outcome.HasField("message") else None
                if outcome.not_started:
                    self._give_back(rec, task)
                elif outcome.retryable:
                    self._retry_or_fail(rec, task, message or "the executor could not run the task")
                else:
                    core.finish_task(rec, task, TaskState.FAILED, message or "the service reported a failure", at=at)
            changed[session_id].append(task)
        for sid, tasks in changed.items():  # before dispatch: a retried task may start again at once
            core.commit_and_publish(sessions[sid], tasks)
        for sid, executor_ids in freed.items():
            core.dispatch(sessions[sid], executor_ids)

    # ---- scheduling -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        c = self.c
        sessions = []
        for rec in c.sessions.values():
            s = rec.session
            if s.state != SessionState.OPEN and not rec.executors:
                continue
            app = c.applications.get(s.spec.application)
            app_max = app.spec.max_instances if app else None
            limits = [m for m in (s.spec.max_instances, app_max) if m is not None]
            delay = app.spec.delay_release if app and app.spec.delay_release is not None else None
            sessions.append(
                SessionView(
                    id=s.id,
                    application=s.spec.application,
                    priority=s.spec.priority,
                    weight=s.spec.weight,
                    min_instances=s.spec.min_instances,
                    max_instances=min(limits) if limits else None,
                    resreq=s.spec.resreq or c.settings.slot,
                    pending=len(rec.pending),
                    running=s.running,
                    open=s.state == SessionState.OPEN,
                    schedulable=not rec.gave_up and app is not None and unsupported_shim(app) is None,
                    delay_release_ms=delay * 1000 if delay is not None else c.settings.default_delay_release_ms,
                    creation_time=s.creation_time,
                )
            )
        executors = tuple(
            ExecutorView(
                id=ex.id,
                node=ex.executor.node,
                state=ex.executor.state,
                resreq=ex.executor.resreq,
                session_id=ex.executor.session_id,
                application=ex.executor.application,
                busy=len(ex.inflight),
                idle_since=ex.idle_since,
            )
            for ex in c.executors.values()
        )
        nodes = tuple(
            NodeView(
                name=n.node.name,
                allocatable=n.node.allocatable,
                max_executors=n.node.max_executors,
                ready=n.link is not None and n.node.state == NodeState.READY,
            )
            for n in c.nodes.values()
        )
        return Snapshot(
            now=now_ms(),
            sessions=tuple(sessions),
            executors=executors,
            nodes=nodes,
            max_executors=c.settings.max_executors,
            idle_release_ms=c.settings.idle_release_ms,
        )

    def apply(self, event: fx.ApplyDecision) -> None:
        """Carry out a plan made from this cycle's snapshot; an action the state no longer allows is skipped."""
        decision = event.decision
        c = self.c
        allowed = {
            BindExecutor: (X.IDLE, X.VOID),
            UnbindExecutor: (X.BOUND,),
            ReleaseExecutor: (X.VOID, X.IDLE, X.BINDING, X.BOUND, X.UNBINDING),
        }
        for action in decision.actions:
            if isinstance(action, (CreateExecutor, BindExecutor)):
                rec = c.sessions.get(action.session_id)
                if rec is None or rec.session.spec.application not in c.applications:
                    logger.warning("skipping %s: the session or its application is gone", action)
                    continue
            if isinstance(action, CreateExecutor):
                node = c.nodes.get(action.node)
                if node is None or node.link is None:
                    logger.warning("skipping %s: the node is not connected", action)
                    continue
                self._create(action)
                continue
            ex = c.executors.get(action.executor_id)
            if ex is None or ex.executor.state not in allowed[type(action)]:
                state = ex.executor.state.name if ex is not None else "gone"
                logger.warning("skipping %s: the executor is %s", action, state)
            elif isinstance(action, BindExecutor):
                self._bind(ex, action.session_id)
            elif isinstance(action, UnbindExecutor):
                logger.info("unbinding executor %s from session %s: %s", ex.id, ex.executor.session_id, action.reason)
                self._unbind(ex)
            else:
                logger.debug("releasing executor %s: %s", ex.id, action.reason)
                self._release(ex)
        for session_id, reason in decision.unplaceable.items():
            unplaceable = c.sessions.get(session_id)
            if unplaceable is not None and not unplaceable.unplaceable_reported:
                unplaceable.unplaceable_reported = True
                c.session_event(unplaceable, EVENT_SESSION_BIND_FAILED, reason)

    def _link(self, ex: ExecutorRecord) -> object | None:
        node = self.c.nodes.get(ex.executor.node)
        return node.link if node is not None else None

    def _create(self, action: CreateExecutor) -> None:
        node = self.c.nodes[action.node]
        executor = Executor(id=f"{action.node}-{secrets.token_hex(4)}", node=action.node, resreq=action.resreq)
        ex = ExecutorRecord(executor)
        self.c.executors[executor.id] = ex
        node.executors.add(executor.id)
        if node.link is not None:
            self.c.out.append(fx.CreateOnNode(node.link, executor.id, executor.resreq))
        self._bind(ex, action.session_id)

    def _bind(self, ex: ExecutorRecord, session_id: str) -> None:
        rec = self.c.sessions[session_id]
        app = self.c.applications[rec.session.spec.application]
        self._set_state(ex, X.BINDING)
        ex.executor.session_id = session_id
        ex.executor.application = app.name
        rec.executors.add(ex.id)
        link = self._link(ex)
        if link is not None:
            timeout = task_timeout_label(app.name, app.spec)
            task_timeout = self.c.settings.task_timeout if timeout is None else timeout
            self.c.out.append(fx.BindOnNode(link, ex.id, rec.session, app, task_timeout))

    def _unbind(self, ex: ExecutorRecord) -> None:
        self._set_state(ex, X.UNBINDING)
        self._detach(ex)
        link = self._link(ex)
        if link is not None:
            self.c.out.append(fx.UnbindOnNode(link, ex.id))

    def _release(self, ex: ExecutorRecord) -> None:
        self._set_state(ex, X.RELEASING)
        rec = self.c.sessions.get(ex.executor.session_id or "")
        if rec is not None:  # no more tasks for it; what it holds is requeued when it is gone
            rec.executors.discard(ex.id)
        link = self._link(ex)
        if link is not None:
            self.c.out.append(fx.ReleaseOnNode(link, ex.id))
