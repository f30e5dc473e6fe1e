"""Domain types: plain dataclasses and enums, free of protobuf and gRPC.

Enum values equal the flame.v1 wire values. Times are integer milliseconds since
the Unix epoch, as on the wire.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import IntEnum

from flame.errors import InvalidArgument


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class SessionState(IntEnum):
    OPEN = 0
    CLOSED = 1


class TaskState(IntEnum):
    PENDING = 0
    RUNNING = 1
    SUCCEED = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def is_final(self) -> bool:
        return self in (TaskState.SUCCEED, TaskState.FAILED, TaskState.CANCELLED)


class Shim(IntEnum):
    HOST = 0
    WASM = 1


class ApplicationState(IntEnum):
    ENABLED = 0
    DISABLED = 1


class ExecutorState(IntEnum):
    UNKNOWN = 0
    VOID = 1
    IDLE = 2
    BINDING = 3
    BOUND = 4
    UNBINDING = 5
    RELEASING = 6
    RELEASED = 7


class NodeState(IntEnum):
    UNKNOWN = 0
    READY = 1
    NOT_READY = 2


# Session event codes (task event codes are the task's new TaskState).
EVENT_SESSION_BIND_FAILED = 1001
EVENT_SESSION_BIND_GIVEN_UP = 1002

_MEMORY_UNITS = {
    "": 1,
    "k": 1024,
    "ki": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mi": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gi": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "ti": 1024**4,
    "tb": 1024**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_memory(text: str | int) -> int:
    """Parse a memory size such as ``512m``, ``2g`` or ``1048576`` into bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidArgument(f"memory must not be negative, got {text}")
        return text
    match = _MEMORY_RE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _MEMORY_UNITS:
        raise InvalidArgument(
            f"invalid memory size {text!r}: expected a whole number with an optional unit k, m, g or t (e.g. 512m, 2g)"
        )
    return int(match.group(1)) * _MEMORY_UNITS[unit]


@dataclass(frozen=True)
class ResourceRequirement:
    """cpu in cores, memory in bytes, gpu in devices."""

    cpu: int = 0
    memory: int = 0
    gpu: int = 0

    @classmethod
    def parse(cls, text: str) -> ResourceRequirement:
        """Parse ``cpu=1,mem=1g[,gpu=0]`` (Flame's notation)."""
        values = {"cpu": 0, "memory": 0, "gpu": 0}
        if not text.strip():
            raise InvalidArgument("empty resource requirement: expected e.g. cpu=1,mem=1g")
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or not value.strip():
                raise InvalidArgument(f"invalid resource entry {part.strip()!r}: expected key=value, e.g. cpu=1")
            if key in ("mem", "memory"):
                values["memory"] = parse_memory(value.strip())
            elif key in ("cpu", "gpu"):
                if not value.strip().isdigit():
                    raise InvalidArgument(f"invalid {key} value {value.strip()!r}: expected a whole number")
                values[key] = int(value)
            else:
                raise InvalidArgument(f"unknown resource {key!r}: accepted keys are cpu, mem (or memory), gpu")
        return cls(**values)

    def fits_in(self, other: ResourceRequirement) -> bool:
        return self.cpu <= other.cpu and self.memory <= other.memory and self.gpu <= other.gpu

    def __add__(self, other: ResourceRequirement) -> ResourceRequirement:
        return ResourceRequirement(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)

    def __sub__(self, other: ResourceRequirement) -> ResourceRequirement:
        return ResourceRequirement(self.cpu - other.cpu, self.memory - other.memory, self.gpu - other.gpu)

    def __str__(self) -> str:
        text = f"cpu={self.cpu},mem={format_memory(self.memory)}"
        return f"{text},gpu={self.gpu}" if self.gpu else text


def format_memory(size: int) -> str:
    for unit, factor in (("t", 1024**4), ("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True)
class Event:
    code: int
    message: str | None = None
    creation_time: int = field(default_factory=now_ms)


@dataclass
class ApplicationSchema:
    input: str | None = None
    output: str | None = None
    common_data: str | None = None


@dataclass
class ApplicationSpec:
    shim: Shim = Shim.HOST
    description: str | None = None
    labels: list[str] = field(default_factory=list)
    image: str | None = None
    command: str | None = None
    arguments: list[str] = field(default_factory=list)
    environments: dict[str, str] = field(default_factory=dict)
    working_directory: str | None = None
    max_instances: int | None = None
    delay_release: int | None = None  # seconds
    schema: ApplicationSchema | None = None
    url: str | None = None
    installer: str | None = None


def application_spec_dict(spec: ApplicationSpec) -> dict[str, object]:
    """The spec as plain JSON-able values (shim as its number), one key per field."""
    schema = spec.schema
    return {
        "shim": int(spec.shim),
        "description": spec.description,
        "labels": list(spec.labels),
        "image": spec.image,
        "command": spec.command,
        "arguments": list(spec.arguments),
        "environments": dict(spec.environments),
        "working_directory": spec.working_directory,
        "max_instances": spec.max_instances,
        "delay_release": spec.delay_release,
        "schema": None
        if schema is None
        else {"input": schema.input, "output": schema.output, "common_data": schema.common_data},
        "url": spec.url,
        "installer": spec.installer,
    }


@dataclass
class Application:
    name: str
    spec: ApplicationSpec
    state: ApplicationState = ApplicationState.ENABLED
    creation_time: int = field(default_factory=now_ms)


@dataclass
class SessionSpec:
    application: str
    common_data: bytes | None = None
    min_instances: int = 0
    max_instances: int | None = None
    batch_size: int = 1
    priority: int = 0
    resreq: ResourceRequirement | None = None
    weight: float = 1.0  # share within its priority tier under fair share (ours; not on flame.v1)
    owner: str | None = None  # who created it, when the cluster authenticates callers (ours; not on flame.v1)


@dataclass
class Session:
    id: str
    spec: SessionSpec
    state: SessionState = SessionState.OPEN
    creation_time: int = field(default_factory=now_ms)
    completion_time: int | None = None
    pending: int = 0
    running: int = 0
    succeed: int = 0
    failed: int = 0
    cancelled: int = 0
    events: list[Event] = field(default_factory=list)
    next_task_id: int = 1


@dataclass
class Task:
    session_id: str
    id: str
    input: bytes | None = None
    output: bytes | None = None
    state: TaskState = TaskState.PENDING
    creation_time: int = field(default_factory=now_ms)
    completion_time: int | None = None
    events: list[Event] = field(default_factory=list)
    attempts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.session_id, self.id)


@dataclass
class Executor:
    id: str
    node: str
    resreq: ResourceRequirement
    shim: Shim = Shim.HOST
    state: ExecutorState = ExecutorState.VOID
    session_id: str | None = None
    application: str | None = None
    creation_time: int = field(default_factory=now_ms)
    log_file: str | None = None


@dataclass
class NodeInfo:
    arch: str = ""
    os: str = ""


@dataclass
class Node:
    name: str
    capacity: ResourceRequirement
    allocatable: ResourceRequirement
    info: NodeInfo = field(default_factory=NodeInfo)
    addresses: list[tuple[str, str]] = field(default_factory=list)
    state: NodeState = NodeState.READY
    last_heartbeat_time: int = field(default_factory=now_ms)
    max_executors: int = 0


__all__ = [
    "EVENT_SESSION_BIND_FAILED",
    "EVENT_SESSION_BIND_GIVEN_UP",
    "Application",
    "ApplicationSchema",
    "ApplicationSpec",
    "ApplicationState",
    "Event",
    "Executor",
    "ExecutorState",
    "Node",
    "NodeInfo",
    "NodeState",
    "ResourceRequirement",
    "Session",
    "SessionSpec",
    "SessionState",
    "Shim",
    "Task",
    "TaskState",
    "application_spec_dict",
    "format_memory",
    "now_ms",
    "parse_memory",
]
