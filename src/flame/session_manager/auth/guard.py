"""The check that runs before every servicer method: authenticate the caller, then the role table.

:class:`Guard` wraps each method handler where the servicers are registered (flame.protocol's
``add_servicer`` hands it the raw-bytes handler, so a refused call is not even parsed). A server
interceptor would do the same, but grpc.aio runs its interceptor chain as extra coroutines on
every call: a wrapper made once per method costs less per call. A refused call ends with
UNAUTHENTICATED or PERMISSION_DENIED before the servicer runs, so it cannot change anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from flame.auth import audit
from flame.auth.identity import Authenticator, Identity
from flame.errors import FlameError, PermissionDenied
from flame.protocol import abort_with
from flame.session_manager.auth.access import CURRENT
from flame.session_manager.auth.roles import RULES, Role, needed

Admit = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


class Guard:
    """Authentication and the role table for the methods of one listener."""

    def __init__(
        self, authenticator: Authenticator, rules: Mapping[str, frozenset[Role]] = RULES, *, certificates: bool = False
    ) -> None:
        self._authenticator = authenticator
        self._rules = rules
        self._certificates = certificates  # read the call's auth context (mTLS)

    def wrap(self, path: str, behaviour: Callable[[Any, Any], Any], streaming: bool) -> Callable[[Any, Any], Any]:
        """``behaviour`` (the handler of method ``path``, e.g. ``/flame.v1.Frontend/CreateTask``), checked first.

        A method missing from the role table is refused to everyone.
        """
        admit = self._admitter(path)
        if streaming:
            return _streaming(behaviour, admit, self._authenticator)
        return _unary(behaviour, admit)

    def servicer(self, servicer: object, service_name: str, methods: list[tuple[str, bool]]) -> object:
        """A stand-in for ``servicer`` whose methods (name, streaming) are wrapped, for generated add_*_to_server."""
        proxy = type(f"Guarded{type(servicer).__name__}", (), {})()
        for name, streaming in methods:
            setattr(proxy, name, self.wrap(f"/{service_name}/{name}", getattr(servicer, name), streaming))
        return proxy

    def _admitter(self, method: str) -> Admit:
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
