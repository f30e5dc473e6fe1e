from flame._proto.v1 import types_pb2 as _types_pb2
from flame._proto.v1 import shim_pb2 as _shim_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNode(_message.Message):
    __slots__ = ("name", "capacity", "info", "addresses", "executors", "max_executors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: _types_pb2.ResourceRequirement
    info: _types_pb2.NodeInfo
    addresses: _containers.RepeatedCompositeFieldContainer[_types_pb2.NodeAddress]
    executors: _containers.RepeatedCompositeFieldContainer[ExecutorReport]
    max_executors: int
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[_Union[_types_pb2.ResourceRequirement, _Mapping]] = ..., info: _Optional[_Union[_types_pb2.NodeInfo, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[_types_pb2.NodeAddress, _Mapping]]] = ..., executors: _Optional[_Iterable[_Union[ExecutorReport, _Mapping]]] = ..., max_executors: _Optional[int] = ...) -> None: ...

class ExecutorReport(_message.Message):
    __slots__ = ("executor_id", "state", "session_id", "message", "log_file")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOG_FILE_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    state: _types_pb2.ExecutorState
    session_id: str
    message: str
    log_file: str
    def __init__(self, executor_id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.ExecutorState, str]] = ..., session_id: _Optional[str] = ..., message: _Optional[str] = ..., log_file: _Optional[str] = ...) -> None: ...

class TaskOutcome(_message.Message):
    __slots__ = ("executor_id", "session_id", "task_id", "state", "output", "message", "retryable", "not_started")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_STARTED_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    session_id: str
    task_id: str
    state: _types_pb2.TaskState
    output: bytes
    message: str
    retryable: bool
    not_started: bool
    def __init__(self, executor_id: _Optional[str] = ..., session_id: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.TaskState, str]] = ..., output: _Optional[bytes] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., not_started: _Optional[bool] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("heartbeat", "register", "executors", "outcomes")
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    heartbeat: bool
    register: RegisterNode
    executors: _containers.RepeatedCompositeFieldContainer[ExecutorReport]
    outcomes: _containers.RepeatedCompositeFieldContainer[TaskOutcome]
    def __init__(self, heartbeat: _Optional[bool] = ..., register: _Optional[_Union[RegisterNode, _Mapping]] = ..., executors: _Optional[_Iterable[_Union[ExecutorReport, _Mapping]]] = ..., outcomes: _Optional[_Iterable[_Union[TaskOutcome, _Mapping]]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("node_name", "heartbeat_interval_ms")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    heartbeat_interval_ms: int
    def __init__(self, node_name: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class CreateExecutor(_message.Message):
    __slots__ = ("executor_id", "resreq")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    RESREQ_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    resreq: _types_pb2.ResourceRequirement
    def __init__(self, executor_id: _Optional[str] = ..., resreq: _Optional[_Union[_types_pb2.ResourceRequirement, _Mapping]] = ...) -> None: ...

class BindExecutor(_message.Message):
    __slots__ = ("executor_id", "session_id", "application_name", "application", "common_data", "task_timeout_ms")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_NAME_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    COMMON_DATA_FIELD_NUMBER: _ClassVar[int]
    TASK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    session_id: str
    application_name: str
    application: _types_pb2.ApplicationSpec
    common_data: bytes
    task_timeout_ms: int
    def __init__(self, executor_id: _Optional[str] = ..., session_id: _Optional[str] = ..., application_name: _Optional[str] = ..., application: _Optional[_Union[_types_pb2.ApplicationSpec, _Mapping]] = ..., common_data: _Optional[bytes] = ..., task_timeout_ms: _Optional[int] = ...) -> None: ...

class RunTask(_message.Message):
    __slots__ = ("executor_id", "task")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    task: _shim_pb2.TaskContext
    def __init__(self, executor_id: _Optional[str] = ..., task: _Optional[_Union[_shim_pb2.TaskContext, _Mapping]] = ...) -> None: ...

class ExecutorCommand(_message.Message):
    __slots__ = ("executor_id",)
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    def __init__(self, executor_id: _Optional[str] = ...) -> None: ...

class ManagerMessage(_message.Message):
    __slots__ = ("registered", "create", "bind", "run", "unbind", "release")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    BIND_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    UNBIND_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    create: _containers.RepeatedCompositeFieldContainer[CreateExecutor]
    bind: _containers.RepeatedCompositeFieldContainer[BindExecutor]
    run: _containers.RepeatedCompositeFieldContainer[RunTask]
    unbind: _containers.RepeatedCompositeFieldContainer[ExecutorCommand]
    release: _containers.RepeatedCompositeFieldContainer[ExecutorCommand]
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., create: _Optional[_Iterable[_Union[CreateExecutor, _Mapping]]] = ..., bind: _Optional[_Iterable[_Union[BindExecutor, _Mapping]]] = ..., run: _Optional[_Iterable[_Union[RunTask, _Mapping]]] = ..., unbind: _Optional[_Iterable[_Union[ExecutorCommand, _Mapping]]] = ..., release: _Optional[_Iterable[_Union[ExecutorCommand, _Mapping]]] = ...) -> None: ...
