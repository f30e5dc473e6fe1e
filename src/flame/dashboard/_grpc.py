"""gRPC calls served, by method and status code: one server interceptor for the metrics.

It wraps each method's handler once (per call it adds a counter increment when the call ends),
so streams, which carry the task hot path, cost one count per stream, not per message.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class CallCounter(grpc.aio.ServerInterceptor):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = str(handler_call_details.method)
        known = self._wrapped.get(method)
        if known is not None:
            return known
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrap(method.rsplit("/", 1)[-1] or method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for attribute, make in kinds:
            behaviour = getattr(handler, attribute)
            if behaviour is not None:
                return make(
                    self._counted(name, behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _counted(self, name: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        count = self._count
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException:
                    count(name, context, failed=True)
                    raise
                count(name, context, failed=False)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                result = await behaviour(request, context)
            except BaseException:
                count(name, context, failed=True)
                raise
            count(name, context, failed=False)
            return result

        return call

    def _count(self, name: str, context: grpc.aio.ServicerContext, *, failed: bool) -> None:
        code = context.code()
        if code is None:
            label = "UNKNOWN" if failed else "OK"
        else:
            label = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.counter.labels(name, label).inc()
