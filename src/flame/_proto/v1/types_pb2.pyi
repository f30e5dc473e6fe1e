from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Open: _ClassVar[SessionState]
    Closed: _ClassVar[SessionState]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Pending: _ClassVar[TaskState]
    Running: _ClassVar[TaskState]
    Succeed: _ClassVar[TaskState]
    Failed: _ClassVar[TaskState]
    Cancelled: _ClassVar[TaskState]

class Shim(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Host: _ClassVar[Shim]
    Wasm: _ClassVar[Shim]

class ApplicationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Enabled: _ClassVar[ApplicationState]
    Disabled: _ClassVar[ApplicationState]

class ExecutorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ExecutorUnknown: _ClassVar[ExecutorState]
    ExecutorVoid: _ClassVar[ExecutorState]
    ExecutorIdle: _ClassVar[ExecutorState]
    ExecutorBinding: _ClassVar[ExecutorState]
    ExecutorBound: _ClassVar[ExecutorState]
    ExecutorUnbinding: _ClassVar[ExecutorState]
    ExecutorReleasing: _ClassVar[ExecutorState]
    ExecutorReleased: _ClassVar[ExecutorState]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Unknown: _ClassVar[NodeState]
    Ready: _ClassVar[NodeState]
    NotReady: _ClassVar[NodeState]
Open: SessionState
Closed: SessionState
Pending: TaskState
Running: TaskState
Succeed: TaskState
Failed: TaskState
Cancelled: TaskState
Host: Shim
Wasm: Shim
Enabled: ApplicationState
Disabled: ApplicationState
ExecutorUnknown: ExecutorState
ExecutorVoid: ExecutorState
ExecutorIdle: ExecutorState
ExecutorBinding: ExecutorState
ExecutorBound: ExecutorState
ExecutorUnbinding: ExecutorState
ExecutorReleasing: ExecutorState
ExecutorReleased: ExecutorState
Unknown: NodeState
Ready: NodeState
NotReady: NodeState

class Metadata(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("code", "message", "creation_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    creation_time: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., creation_time: _Optional[int] = ...) -> None: ...

class ResourceRequirement(_message.Message):
    __slots__ = ("cpu", "memory", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: int
    memory: int
    gpu: int
    def __init__(self, cpu: _Optional[int] = ..., memory: _Optional[int] = ..., gpu: _Optional[int] = ...) -> None: ...

class SessionSpec(_message.Message):
    __slots__ = ("application", "common_data", "min_instances", "max_instances", "batch_size", "priority", "resreq")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    COMMON_DATA_FIELD_NUMBER: _ClassVar[int]
    MIN_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESREQ_FIELD_NUMBER: _ClassVar[int]
    application: str
    common_data: bytes
    min_instances: int
    max_instances: int
    batch_size: int
    priority: int
    resreq: ResourceRequirement
    def __init__(self, application: _Optional[str] = ..., common_data: _Optional[bytes] = ..., min_instances: _Optional[int] = ..., max_instances: _Optional[int] = ..., batch_size: _Optional[int] = ..., priority: _Optional[int] = ..., resreq: _Optional[_Union[ResourceRequirement, _Mapping]] = ...) -> None: ...

class SessionStatus(_message.Message):
    __slots__ = ("state", "creation_time", "completion_time", "pending", "running", "succeed", "failed", "events", "cancelled")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TIME_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCEED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    creation_time: int
    completion_time: int
    pending: int
    running: int
    succeed: int
    failed: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    cancelled: int
    def __init__(self, state: _Optional[_Union[SessionState, str]] = ..., creation_time: _Optional[int] = ..., completion_time: _Optional[int] = ..., pending: _Optional[int] = ..., running: _Optional[int] = ..., succeed: _Optional[int] = ..., failed: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., cancelled: _Optional[int] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: SessionSpec
    status: SessionStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[SessionSpec, _Mapping]] = ..., status: _Optional[_Union[SessionStatus, _Mapping]] = ...) -> None: ...

class SessionList(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("session_id", "input", "output")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    input: bytes
    output: bytes
    def __init__(self, session_id: _Optional[str] = ..., input: _Optional[bytes] = ..., output: _Optional[bytes] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("state", "creation_time", "completion_time", "events")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    creation_time: int
    completion_time: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., creation_time: _Optional[int] = ..., completion_time: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: TaskSpec
    status: TaskStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, _Mapping]] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ApplicationSchema(_message.Message):
    __slots__ = ("input", "output", "common_data")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    COMMON_DATA_FIELD_NUMBER: _ClassVar[int]
    input: str
    output: str
    common_data: str
    def __init__(self, input: _Optional[str] = ..., output: _Optional[str] = ..., common_data: _Optional[str] = ...) -> None: ...

class ApplicationSpec(_message.Message):
    __slots__ = ("shim", "description", "labels", "image", "command", "arguments", "environments", "working_directory", "max_instances", "delay_release", "schema", "url", "installer")
    SHIM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    DELAY_RELEASE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    INSTALLER_FIELD_NUMBER: _ClassVar[int]
    shim: Shim
    description: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    image: str
    command: str
    arguments: _containers.RepeatedScalarFieldContainer[str]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    working_directory: str
    max_instances: int
    delay_release: int
    schema: ApplicationSchema
    url: str
    installer: str
    def __init__(self, shim: _Optional[_Union[Shim, str]] = ..., description: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., command: _Optional[str] = ..., arguments: _Optional[_Iterable[str]] = ..., environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ..., working_directory: _Optional[str] = ..., max_instances: _Optional[int] = ..., delay_release: _Optional[int] = ..., schema: _Optional[_Union[ApplicationSchema, _Mapping]] = ..., url: _Optional[str] = ..., installer: _Optional[str] = ...) -> None: ...

class ApplicationStatus(_message.Message):
    __slots__ = ("state", "creation_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    state: ApplicationState
    creation_time: int
    def __init__(self, state: _Optional[_Union[ApplicationState, str]] = ..., creation_time: _Optional[int] = ...) -> None: ...

class Application(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: ApplicationSpec
    status: ApplicationStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[ApplicationSpec, _Mapping]] = ..., status: _Optional[_Union[ApplicationStatus, _Mapping]] = ...) -> None: ...

class ApplicationList(_message.Message):
    __slots__ = ("applications",)
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    applications: _containers.RepeatedCompositeFieldContainer[Application]
    def __init__(self, applications: _Optional[_Iterable[_Union[Application, _Mapping]]] = ...) -> None: ...

class ExecutorSpec(_message.Message):
    __slots__ = ("node", "resreq", "shim")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RESREQ_FIELD_NUMBER: _ClassVar[int]
    SHIM_FIELD_NUMBER: _ClassVar[int]
    node: str
    resreq: ResourceRequirement
    shim: Shim
    def __init__(self, node: _Optional[str] = ..., resreq: _Optional[_Union[ResourceRequirement, _Mapping]] = ..., shim: _Optional[_Union[Shim, str]] = ...) -> None: ...

class ExecutorStatus(_message.Message):
    __slots__ = ("state", "session_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    state: ExecutorState
    session_id: str
    def __init__(self, state: _Optional[_Union[ExecutorState, str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class Executor(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: ExecutorSpec
    status: ExecutorStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[ExecutorSpec, _Mapping]] = ..., status: _Optional[_Union[ExecutorStatus, _Mapping]] = ...) -> None: ...

class ExecutorList(_message.Message):
    __slots__ = ("executors",)
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    executors: _containers.RepeatedCompositeFieldContainer[Executor]
    def __init__(self, executors: _Optional[_Iterable[_Union[Executor, _Mapping]]] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("hostname",)
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    def __init__(self, hostname: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("arch", "os")
    ARCH_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    arch: str
    os: str
    def __init__(self, arch: _Optional[str] = ..., os: _Optional[str] = ...) -> None: ...

class NodeAddress(_message.Message):
    __slots__ = ("type", "address")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    type: str
    address: str
    def __init__(self, type: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("state", "capacity", "allocatable", "info", "addresses", "last_heartbeat_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    capacity: ResourceRequirement
    allocatable: ResourceRequirement
    info: NodeInfo
    addresses: _containers.RepeatedCompositeFieldContainer[NodeAddress]
    last_heartbeat_time: int
    def __init__(self, state: _Optional[_Union[NodeState, str]] = ..., capacity: _Optional[_Union[ResourceRequirement, _Mapping]] = ..., allocatable: _Optional[_Union[ResourceRequirement, _Mapping]] = ..., info: _Optional[_Union[NodeInfo, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[NodeAddress, _Mapping]]] = ..., last_heartbeat_time: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: NodeSpec
    status: NodeStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("return_code", "message")
    RETURN_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    return_code: int
    message: str
    def __init__(self, return_code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("return_code", "output", "message")
    RETURN_CODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    return_code: int
    output: bytes
    message: str
    def __init__(self, return_code: _Optional[int] = ..., output: _Optional[bytes] = ..., message: _Optional[str] = ...) -> None: ...

class EmptyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
