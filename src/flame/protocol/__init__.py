"""The one bridge between generated protobuf code and the rest of Flame.

Other packages import message classes and stubs from here (never from flame._proto)
and convert with the functions below, so the wire format can change in one place.
"""

from flame._proto.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    ext_pb2,
    ext_pb2_grpc,
    frontend_pb2,
    frontend_pb2_grpc,
    shim_pb2,
    shim_pb2_grpc,
    types_pb2,
)
from flame.protocol._bson import decode_object_ref, encode_object_ref
from flame.protocol._convert import (
    application_from_pb,
    application_spec_from_pb,
    application_spec_to_pb,
    application_to_pb,
    compact_batch_to_pb,
    event_from_pb,
    event_to_pb,
    executor_from_pb,
    executor_to_pb,
    final_message,
    node_from_pb,
    node_to_pb,
    resreq_from_pb,
    resreq_to_pb,
    session_from_pb,
    session_spec_from_pb,
    session_spec_to_pb,
    session_to_pb,
    task_from_pb,
    task_to_pb,
    wire_enum,
)
from flame.protocol._errors import abort_with, error_from_rpc, error_from_status, status_for
from flame.protocol._services import add_servicer

__all__ = [
    "abort_with",
    "add_servicer",
    "application_from_pb",
    "application_spec_from_pb",
    "application_spec_to_pb",
    "application_to_pb",
    "backend_pb2",
    "backend_pb2_grpc",
    "compact_batch_to_pb",
    "decode_object_ref",
    "encode_object_ref",
    "error_from_rpc",
    "error_from_status",
    "event_from_pb",
    "event_to_pb",
    "executor_from_pb",
    "executor_to_pb",
    "ext_pb2",
    "ext_pb2_grpc",
    "final_message",
    "frontend_pb2",
    "frontend_pb2_grpc",
    "node_from_pb",
    "node_to_pb",
    "resreq_from_pb",
    "resreq_to_pb",
    "session_from_pb",
    "session_spec_from_pb",
    "session_spec_to_pb",
    "session_to_pb",
    "shim_pb2",
    "shim_pb2_grpc",
    "status_for",
    "task_from_pb",
    "task_to_pb",
    "types_pb2",
    "wire_enum",
]
