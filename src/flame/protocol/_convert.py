"""protobuf <-> domain dataclasses for the flame.v1 types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flame._proto.v1 import ext_pb2
from flame._proto.v1 import types_pb2 as pb
from flame.errors import InvalidArgument
from flame.types import (
    Application,
    ApplicationSchema,
    ApplicationSpec,
    ApplicationState,
    Event,
    Executor,
    ExecutorState,
    Node,
    NodeInfo,
    NodeState,
    ResourceRequirement,
    Session,
    SessionSpec,
    SessionState,
    Shim,
    Task,
    TaskState,
)


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def wire_enum(value: int) -> Any:
    """An IntEnum as the generated stubs accept it (their hints leave out plain ints)."""
    return int(value)


def event_to_pb(event: Event) -> pb.Event:
    return pb.Event(code=event.code, message=event.message, creation_time=event.creation_time)


def event_from_pb(event: pb.Event) -> Event:
    return Event(code=event.code, message=_opt(event, "message"), creation_time=event.creation_time)


def resreq_to_pb(resreq: ResourceRequirement) -> pb.ResourceRequirement:
    return pb.ResourceRequirement(cpu=resreq.cpu, memory=resreq.memory, gpu=resreq.gpu)


def resreq_from_pb(resreq: pb.ResourceRequirement) -> ResourceRequirement:
    return ResourceRequirement(cpu=resreq.cpu, memory=resreq.memory, gpu=resreq.gpu)


def application_spec_to_pb(spec: ApplicationSpec) -> pb.ApplicationSpec:
    message = pb.ApplicationSpec(
        shim=wire_enum(spec.shim),
        description=spec.description,
        labels=spec.labels,
        image=spec.image,
        command=spec.command,
        arguments=spec.arguments,
        environments=[pb.Environment(name=k, value=v) for k, v in spec.environments.items()],
        working_directory=spec.working_directory,
        max_instances=spec.max_instances,
        delay_release=spec.delay_release,
        url=spec.url,
        installer=spec.installer,
    )
    if spec.schema is not None:
        message.schema.CopyFrom(
            pb.ApplicationSchema(
                input=spec.schema.input, output=spec.schema.output, common_data=spec.schema.common_data
            )
        )
    return message


def _shim(value: int) -> Shim:
    try:
        return Shim(value)
    except ValueError:
        accepted = ", ".join(f"{s.name.title()} ({s.value})" for s in Shim)
        raise InvalidArgument(f"unknown shim {value}; accepted: {accepted}") from None


def application_spec_from_pb(spec: pb.ApplicationSpec) -> ApplicationSpec:
    schema = None
    if spec.HasField("schema"):
        schema = ApplicationSchema(
            input=_opt(spec.schema, "input"),
            output=_opt(spec.schema, "output"),
            common_data=_opt(spec.schema, "common_data"),
        )
    return ApplicationSpec(
        shim=_shim(spec.shim),
        description=_opt(spec, "description"),
        labels=list(spec.labels),
        image=_opt(spec, "image"),
        command=_opt(spec, "command"),
        arguments=list(spec.arguments),
        environments={env.name: env.value for env in spec.environments},
        working_directory=_opt(spec, "working_directory"),
        max_instances=_opt(spec, "max_instances"),
        delay_release=_opt(spec, "delay_release"),
        schema=schema,
        url=_opt(spec, "url"),
        installer=_opt(spec, "installer"),
    )


def application_to_pb(app: Application) -> pb.Application:
    return pb.Application(
        metadata=pb.Metadata(id=app.name, name=app.name),
        spec=application_spec_to_pb(app.spec),
        status=pb.ApplicationStatus(state=wire_enum(app.state), creation_time=app.creation_time),
    )


def application_from_pb(app: pb.Application) -> Application:
    return Application(
        name=app.metadata.name or app.metadata.id,
        spec=application_spec_from_pb(app.spec),
        state=ApplicationState(app.status.state),
        creation_time=app.status.creation_time,
    )


def session_spec_to_pb(spec: SessionSpec) -> pb.SessionSpec:
    message = pb.SessionSpec(
        application=spec.application,
        common_data=spec.common_data,
        min_instances=spec.min_instances,
        max_instances=spec.max_instances,
        batch_size=spec.batch_size,
        priority=spec.priority,
    )
    if spec.resreq is not None:
        message.resreq.CopyFrom(resreq_to_pb(spec.resreq))
    return message


def session_spec_from_pb(spec: pb.SessionSpec) -> SessionSpec:
    """Field values are taken as sent; the session manager validates them."""
    return SessionSpec(
        application=spec.application,
        common_data=_opt(spec, "common_data"),
        min_instances=spec.min_instances,
        max_instances=_opt(spec, "max_instances"),
        batch_size=spec.batch_size,
        priority=spec.priority,
        resreq=resreq_from_pb(spec.resreq) if spec.HasField("resreq") else None,
    )


def session_to_pb(session: Session, *, with_events: bool = True) -> pb.Session:
    return pb.Session(
        metadata=pb.Metadata(id=session.id, name=session.id),
        spec=session_spec_to_pb(session.spec),
        status=pb.SessionStatus(
            state=wire_enum(session.state),
            creation_time=session.creation_time,
            completion_time=session.completion_time,
            pending=session.pending,
            running=session.running,
            succeed=session.succeed,
            failed=session.failed,
            cancelled=session.cancelled,
            events=[event_to_pb(e) for e in session.events] if with_events else [],
        ),
    )


def task_to_pb(task: Task, *, with_input: bool = True) -> pb.Task:
    return pb.Task(
        metadata=pb.Metadata(id=task.id, name=task.id),
        spec=pb.TaskSpec(
            session_id=task.session_id,
            input=task.input if with_input else None,
            output=task.output,
        ),
        status=pb.TaskStatus(
            state=wire_enum(task.state),
            creation_time=task.creation_time,
            completion_time=task.completion_time,
            events=[event_to_pb(e) for e in task.events],
        ),
    )


def final_message(task: Task) -> str | None:
    """Why a finished task ended as it did: the message of its last event of that state."""
    code = int(task.state)
    for event in reversed(task.events):
        if event.code == code:
            return event.message
    return None


def compact_batch_to_pb(tasks: Iterable[Task]) -> ext_pb2.TaskBatch:
    """Finished tasks as one message of the SDK's result stream: each its id, state, output (when
    it has one) and, unless it succeeded, the message of its final event.

    Built in place: a CompactTask made first would be copied into the batch again (about twice
    the cost, on the path every finished task takes).
    """
    batch = ext_pb2.TaskBatch()
    add = batch.results.add
    succeed = TaskState.SUCCEED
    for task in tasks:
        state = task.state
        if state == succeed:
            result = add(id=task.id, state=int(state))
        else:
            result = add(id=task.id, state=int(state), message=final_message(task))
        if task.output is not None:
            result.output = task.output
    return batch


def executor_to_pb(executor: Executor) -> pb.Executor:
    return pb.Executor(
        metadata=pb.Metadata(id=executor.id, name=executor.id),
        spec=pb.ExecutorSpec(node=executor.node, resreq=resreq_to_pb(executor.resreq), shim=wire_enum(executor.shim)),
        status=pb.ExecutorStatus(state=wire_enum(executor.state), session_id=executor.session_id),
    )


def node_to_pb(node: Node) -> pb.Node:
    return pb.Node(
        metadata=pb.Metadata(id=node.name, name=node.name),
        spec=pb.NodeSpec(hostname=node.name),
        status=pb.NodeStatus(
            state=wire_enum(node.state),
            capacity=resreq_to_pb(node.capacity),
            allocatable=resreq_to_pb(node.allocatable),
            info=pb.NodeInfo(arch=node.info.arch, os=node.info.os),
            addresses=[pb.NodeAddress(type=t, address=a) for t, a in node.addresses],
            last_heartbeat_time=node.last_heartbeat_time,
        ),
    )


def session_from_pb(message: pb.Session) -> Session:
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


def task_from_pb(message: pb.Task) -> Task:
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


def executor_from_pb(message: pb.Executor) -> Executor:
    # Read from a server's answer: an unknown shim is shown as Host rather than refused.
    shim = Shim(message.spec.shim) if message.spec.shim in Shim._value2member_map_ else Shim.HOST
    return Executor(
        id=message.metadata.id,
        node=message.spec.node,
        resreq=resreq_from_pb(message.spec.resreq),
        shim=shim,
        state=ExecutorState(message.status.state),
        session_id=_opt(message.status, "session_id"),
    )


def node_from_pb(message: pb.Node) -> Node:
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
