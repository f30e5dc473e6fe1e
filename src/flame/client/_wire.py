"""protobuf -> domain conversions the SDK needs and flame.protocol does not offer yet.

TODO(protocol): move these into flame.protocol next to their *_to_pb counterparts.
"""

from __future__ import annotations

from typing import Any

from flame.protocol import event_from_pb, resreq_from_pb, session_spec_from_pb
from flame.types import (
    Executor,
    ExecutorState,
    Node,
    NodeInfo,
    NodeState,
    Session,
    SessionState,
    Shim,
    Task,
    TaskState,
)


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def session_from_pb(message: Any) -> Session:
    status = message.status
    return Session(
        id=message.metadata.id,
        spec=session_spec_from_pb(message.spec),
        state=SessionState(status.state),
        creation_time=status.creation_time,
        completion_time=_opt(status, "completion_time"),
        pending=status.pending,
        running=status.running,
        succeed=status.succeed,
        failed=status.failed,
        cancelled=status.cancelled,
        events=[event_from_pb(e) for e in status.events],
    )


def task_from_pb(message: Any) -> Task:
    return Task(
        session_id=message.spec.session_id,
        id=message.metadata.id,
        input=_opt(message.spec, "input"),
        output=_opt(message.spec, "output"),
        state=TaskState(message.status.state),
        creation_time=message.status.creation_time,
        completion_time=_opt(message.status, "completion_time"),
        events=[event_from_pb(e) for e in message.status.events],
    )


def executor_from_pb(message: Any) -> Executor:
    return Executor(
        id=message.metadata.id,
        node=message.spec.node,
        resreq=resreq_from_pb(message.spec.resreq),
        shim=Shim(message.spec.shim) if message.spec.shim in Shim._value2member_map_ else Shim.HOST,
        state=ExecutorState(message.status.state),
        session_id=_opt(message.status, "session_id"),
    )


def node_from_pb(message: Any) -> Node:
    status = message.status
    return Node(
        name=message.metadata.name or message.metadata.id,
        capacity=resreq_from_pb(status.capacity),
        allocatable=resreq_from_pb(status.allocatable),
        info=NodeInfo(arch=status.info.arch, os=status.info.os),
        addresses=[(a.type, a.address) for a in status.addresses],
        state=NodeState(status.state),
        last_heartbeat_time=status.last_heartbeat_time,
    )
