"""Registering servicers so that a malformed request gets INVALID_ARGUMENT.

The generated add_*Servicer_to_server functions let gRPC parse each request; a payload
that is not valid protobuf then fails inside gRPC with UNKNOWN and an error in the log.
Here the handlers take raw bytes and parse them themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


async def _parse(method: MethodDescriptor, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
    try:
        return message_factory.GetMessageClass(method.input_type).FromString(raw)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {method.input_type.full_name} message: {exc}")


def _unary(
    method: MethodDescriptor, impl: Callable[[Any, Any], Awaitable[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await impl(await _parse(method, raw, context), context)

    return handle


def _stream(
    method: MethodDescriptor, impl: Callable[[Any, Any], AsyncIterator[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for item in impl(await _parse(method, raw, context), context):
            yield item

    return handle


def _bidi(
    method: MethodDescriptor, impl: Callable[[Any, Any], AsyncIterator[Any]]
) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handle(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async def requests() -> AsyncIterator[Any]:
            async for raw in raws:
                yield await _parse(method, raw, context)

        async for item in impl(requests(), context):
            yield item

    return handle


# (method path such as "/flame.v1.Frontend/CreateTask", raw-bytes handler, server streaming?) -> handler
Wrap = Callable[[str, Callable[[Any, Any], Any], bool], Callable[[Any, Any], Any]]


def add_servicer(
    server: grpc.aio.Server, service: ServiceDescriptor, servicer: object, wrap: Wrap | None = None
) -> None:
    """Serve ``service``'s unary, server-streaming and bidirectional methods from ``servicer``'s
    methods of the same names.

    ``wrap`` (e.g. an authorization check) wraps each raw-bytes handler, so it runs before the request is parsed.
    """
    handlers = {}
    for method in service.methods:
        if method.client_streaming and not method.server_streaming:
            raise ValueError(f"{method.full_name}: client streaming without a response stream is not supported here")
        impl = getattr(servicer, method.name)
        handle: Callable[[Any, Any], Any]
        if method.client_streaming:
            handle = _bidi(method, impl)
        else:
            handle = _stream(method, impl) if method.server_streaming else _unary(method, impl)
        if wrap is not None:
            handle = wrap(f"/{service.full_name}/{method.name}", handle, method.server_streaming)
        serializer = _serialize
        if method.client_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(handle, response_serializer=serializer)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(handle, response_serializer=serializer)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(handle, response_serializer=serializer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
