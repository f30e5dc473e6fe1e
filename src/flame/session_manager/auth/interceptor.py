"""The server interceptor that authenticates every call and checks the role table before the servicer runs.

The check happens inside the method handler (not in ``intercept_service``) because a client
certificate is only visible on the call's context. A refused call ends with UNAUTHENTICATED or
PERMISSION_DENIED before the request is even parsed, so it cannot change anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc

from flame.errors import FlameError, PermissionDenied
from flame.protocol import abort_with
from flame.session_manager.auth import audit
from flame.session_manager.auth.access import CURRENT
from flame.session_manager.auth.identity import Identity
from flame.session_manager.auth.roles import RULES, Role, needed


class Authenticator(Protocol):
    #: Changes when the credentials are reloaded: open streams check their caller again.
    generation: int

    def authenticate(self, metadata: Any, auth_context: Any = None) -> Identity: ...


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, authenticator: Authenticator, rules: Mapping[str, frozenset[Role]] = RULES, *, certificates: bool = False
    ) -> None:
        self._authenticator = authenticator
        self._rules = rules
        self._certificates = certificates  # read the call's auth context (mTLS)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _guard(handler, self._admitter(method), self._authenticator)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _admitter(self, method: str) -> Callable[[grpc.aio.ServicerContext], Awaitable[None]]:
        roles = self._rules.get(method, frozenset())
        authenticate = self._authenticator.authenticate
        certificates = self._certificates

        async def admit(context: grpc.aio.ServicerContext) -> None:
            identity: Identity | None = None
            try:
                identity = authenticate(context.invocation_metadata(), context.auth_context() if certificates else None)
                if identity.role not in roles:
                    raise PermissionDenied(f"{method.lstrip('/')} needs {needed(roles)}; {identity} has not")
            except FlameError as exc:
                audit.refused(method, exc.message, identity, context.peer())
                await abort_with(context, exc)
            CURRENT.set(identity)

        return admit


Admit = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


def _guard(handler: grpc.RpcMethodHandler, admit: Admit, authenticator: Authenticator) -> grpc.RpcMethodHandler:
    """The same handler, with ``admit`` run first (and again on streams after a reload)."""
    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, admit), deserialize, serialize)
    if handler.unary_stream is not None:
        guarded = _streaming(handler.unary_stream, admit, authenticator)
        return grpc.unary_stream_rpc_method_handler(guarded, deserialize, serialize)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, admit), deserialize, serialize)
    guarded = _streaming(handler.stream_stream, admit, authenticator)
    return grpc.stream_stream_rpc_method_handler(guarded, deserialize, serialize)


def _unary(behaviour: Callable[[Any, Any], Any], admit: Admit) -> Callable[[Any, Any], Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await admit(context)
        return await behaviour(request, context)

    return guarded


def _streaming(
    behaviour: Callable[[Any, Any], Any], admit: Admit, authenticator: Authenticator
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await admit(context)
        generation = authenticator.generation
        async for response in behaviour(request, context):
            if authenticator.generation != generation:  # reloaded: a revoked caller gets nothing more
                await admit(context)
                generation = authenticator.generation
            yield response

    return guarded
