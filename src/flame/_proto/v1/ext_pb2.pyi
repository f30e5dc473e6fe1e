from flame._proto.v1 import types_pb2 as _types_pb2
from flame._proto.v1 import shim_pb2 as _shim_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitTasksRequest(_message.Message):
    __slots__ = ("session_id", "inputs")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    inputs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session_id: _Optional[str] = ..., inputs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubmitTasksResponse(_message.Message):
    __slots__ = ("first_task_id", "count")
    FIRST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    first_task_id: int
    count: int
    def __init__(self, first_task_id: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("first_task_id", "count", "code", "message")
    FIRST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    first_task_id: int
    count: int
    code: int
    message: str
    def __init__(self, first_task_id: _Optional[int] = ..., count: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("session_id", "include_completed", "compact")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    include_completed: bool
    compact: bool
    def __init__(self, session_id: _Optional[str] = ..., include_completed: _Optional[bool] = ..., compact: _Optional[bool] = ...) -> None: ...

class TaskBatch(_message.Message):
    __slots__ = ("tasks", "results")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_types_pb2.Task]
    results: _containers.RepeatedCompositeFieldContainer[CompactTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_types_pb2.Task, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[CompactTask, _Mapping]]] = ...) -> None: ...

class CompactTask(_message.Message):
    __slots__ = ("id", "state", "output", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: _types_pb2.TaskState
    output: bytes
    message: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.TaskState, str]] = ..., output: _Optional[bytes] = ..., message: _Optional[str] = ...) -> None: ...

class CancelTasksRequest(_message.Message):
    __slots__ = ("session_id", "task_ids")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelTasksResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancelled: _Optional[_Iterable[str]] = ...) -> None: ...

class SetSessionWeightRequest(_message.Message):
    __slots__ = ("session_id", "weight")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    weight: float
    def __init__(self, session_id: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class ExecutorDetail(_message.Message):
    __slots__ = ("executor", "log_file", "application")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    LOG_FILE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    executor: _types_pb2.Executor
    log_file: str
    application: str
    def __init__(self, executor: _Optional[_Union[_types_pb2.Executor, _Mapping]] = ..., log_file: _Optional[str] = ..., application: _Optional[str] = ...) -> None: ...

class ListExecutorDetailsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecutorDetailList(_message.Message):
    __slots__ = ("executors",)
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    executors: _containers.RepeatedCompositeFieldContainer[ExecutorDetail]
    def __init__(self, executors: _Optional[_Iterable[_Union[ExecutorDetail, _Mapping]]] = ...) -> None: ...

class InvokeBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_shim_pb2.TaskContext]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_shim_pb2.TaskContext, _Mapping]]] = ...) -> None: ...

class InvokeResult(_message.Message):
    __slots__ = ("task_id", "return_code", "output", "message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RETURN_CODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    return_code: int
    output: bytes
    message: str
    def __init__(self, task_id: _Optional[str] = ..., return_code: _Optional[int] = ..., output: _Optional[bytes] = ..., message: _Optional[str] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[InvokeResult]
    def __init__(self, results: _Optional[_Iterable[_Union[InvokeResult, _Mapping]]] = ...) -> None: ...
