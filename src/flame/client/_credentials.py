"""The bearer token on every call of a channel: ``authorization: Bearer <token>`` metadata.

A client interceptor rather than gRPC call credentials, because call credentials are refused on
plaintext channels and a token cluster may be served over http on a trusted network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

AUTHORIZATION = "authorization"


class _Bearer:
    def __init__(self, token: str) -> None:
        self._pair = (AUTHORIZATION, f"Bearer {token}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"

    def _with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._pair)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _StreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._with_token(details), requests)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._with_token(details), requests)


def bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call kind: grpc.aio files each interceptor under the first kind it implements."""
    return [kind(token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
