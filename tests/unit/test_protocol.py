"""The protocol sources: generated code is current, and flame.v1 matches flamepy 0.6.0 on the wire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

from flame import errors
from flame.protocol import (
    compact_batch_to_pb,
    error_from_rpc,
    ext_pb2,
    frontend_pb2,
    shim_pb2,
    status_for,
    types_pb2,
)
from flame.types import Event, Task, TaskState

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def _fields(message: Descriptor) -> dict[str, tuple[int, int, str, bool, bool]]:
    return {
        f.name: (f.number, f.type, f.message_type.full_name if f.message_type else "", f.is_repeated, f.has_presence)
        for f in message.fields
    }


def _messages(file: FileDescriptor) -> dict[str, Descriptor]:
    return dict(file.message_types_by_name)


def _enums(file: FileDescriptor) -> dict[str, EnumDescriptor]:
    return dict(file.enum_types_by_name)


@pytest.mark.parametrize(
    ("ours", "theirs_module"),
    [(types_pb2, "types_pb2"), (frontend_pb2, "frontend_pb2"), (shim_pb2, "shim_pb2")],
)
def test_flame_v1_matches_flamepy_descriptors(ours: object, theirs_module: str) -> None:
    theirs = __import__(f"flamepy.proto.{theirs_module}", fromlist=["DESCRIPTOR"])
    mine: FileDescriptor = ours.DESCRIPTOR  # type: ignore[attr-defined]
    other: FileDescriptor = theirs.DESCRIPTOR
    assert mine.package == other.package == "flame.v1"
    assert set(_messages(mine)) == set(_messages(other))
    for name, message in _messages(other).items():
        assert _fields(_messages(mine)[name]) == _fields(message), name
    for name, enum in _enums(other).items():
        assert {v.name: v.number for v in _enums(mine)[name].values} == {v.name: v.number for v in enum.values}
    for name, service in other.services_by_name.items():
        our_service = mine.services_by_name[name]
        assert our_service.full_name == service.full_name
        for method in service.methods:
            ours_m = our_service.methods_by_name[method.name]
            assert (ours_m.input_type.full_name, ours_m.output_type.full_name) == (
                method.input_type.full_name,
                method.output_type.full_name,
            )
            assert (ours_m.client_streaming, ours_m.server_streaming) == (
                method.client_streaming,
                method.server_streaming,
            )
        assert set(our_service.methods_by_name) == {m.name for m in service.methods}


def test_errors_map_to_status_codes_and_back() -> None:
    import grpc

    class FakeError(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            self._code, self._details = code, details

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

    for exc_type in (errors.NotFound, errors.AlreadyExists, errors.InvalidArgument, errors.InvalidState):
        code = status_for(exc_type("x"))
        back = error_from_rpc(FakeError(code, "what went wrong"), "doing it")
        assert type(back) is exc_type
        assert back.message == "doing it: what went wrong"
    assert status_for(errors.InvalidState("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert type(error_from_rpc(FakeError(grpc.StatusCode.DATA_LOSS, "?"))) is errors.Internal


def test_compact_task_carries_id_state_output_and_the_final_message() -> None:
    def compact_task_to_pb(task: Task) -> ext_pb2.CompactTask:
        return compact_batch_to_pb([task]).results[0]

    done = Task(session_id="s", id="7", input=b"in", output=b"out", state=TaskState.SUCCEED)
    done.events = [Event(int(TaskState.PENDING), "task created"), Event(int(TaskState.RUNNING), "running on e1")]
    compact = compact_task_to_pb(done)
    assert (compact.id, compact.state, compact.output, compact.HasField("message")) == ("7", 2, b"out", False)

    failed = Task(session_id="s", id="8", state=TaskState.FAILED)
    failed.events = [
        Event(int(TaskState.FAILED), "an older failure"),
        Event(int(TaskState.PENDING), "retrying"),
        Event(int(TaskState.FAILED), "ValueError: bad input"),
    ]
    compact = compact_task_to_pb(failed)
    assert (compact.state, compact.message, compact.HasField("output")) == (3, "ValueError: bad input", False)
    assert len(compact.SerializeToString()) < 40  # no input, no events, no times


def test_a_compact_batch_holds_each_task_with_exactly_its_fields() -> None:
    tasks = [
        Task(session_id="s", id="1", state=TaskState.SUCCEED, output=b"out"),
        Task(session_id="s", id="2", state=TaskState.SUCCEED, output=b""),  # empty, but there
        Task(session_id="s", id="3", state=TaskState.SUCCEED),  # no output at all
        Task(session_id="s", id="4", state=TaskState.FAILED, events=[Event(3, "boom", 1)]),
        Task(session_id="s", id="5", state=TaskState.FAILED),
        Task(session_id="s", id="6", state=TaskState.CANCELLED, events=[Event(4, None, 2)]),
    ]
    batch = compact_batch_to_pb(tasks)
    assert list(batch.results) == [
        ext_pb2.CompactTask(id="1", state=2, output=b"out"),
        ext_pb2.CompactTask(id="2", state=2, output=b""),
        ext_pb2.CompactTask(id="3", state=2),
        ext_pb2.CompactTask(id="4", state=3, message="boom"),
        ext_pb2.CompactTask(id="5", state=3),
        ext_pb2.CompactTask(id="6", state=4),
    ]
    assert [r.HasField("output") for r in batch.results] == [True, True, False, False, False, False]
    assert [r.message for r in batch.results if r.HasField("message")] == ["boom"]
