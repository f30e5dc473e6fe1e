"""AsyncConnection: the async core of the client SDK (the sync layer wraps it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from flame.client._endpoint import Endpoint, _resolve_endpoint, open_channel, unreachable, wait_until_ready
from flame.client._object_ref import ObjectRef
from flame.client._objects import AsyncObjectMethods
from flame.client._session import AsyncSession
from flame.client._specs import application_spec, new_session_id, session_spec
from flame.errors import FlameError, Internal, InvalidArgument, InvalidState, NotFound, Unavailable
from flame.protocol import (
    application_from_pb,
    application_spec_to_pb,
    error_from_rpc,
    executor_from_pb,
    ext_pb2,
    ext_pb2_grpc,
    frontend_pb2,
    frontend_pb2_grpc,
    node_from_pb,
    session_from_pb,
    session_spec_to_pb,
)
from flame.types import Application, ApplicationSpec, Executor, Node, ResourceRequirement, SessionSpec
from flame.types import Session as SessionInfo

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0


class AsyncConnection(AsyncObjectMethods):
    """A connection to a Flame cluster for asyncio code.

    ``conn = await AsyncConnection.connect()`` (or ``async with await AsyncConnection.connect()``);
    every method is a coroutine and raises a FlameError subclass on failure.
    """

    def __init__(self, endpoint: Endpoint, channel: grpc.aio.Channel) -> None:
        """Use ``AsyncConnection.connect``; this wraps an already open channel."""
        self._endpoint = endpoint
        self._channel = channel
        self._frontend = frontend_pb2_grpc.FrontendStub(channel)
        self._ext = ext_pb2_grpc.FrontendExtStub(channel)
        self._sessions: set[AsyncSession] = set()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        endpoint: str | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = CONNECT_TIMEOUT,
        config: str | Path | None = None,
        token: str | None = None,
    ) -> AsyncConnection:
        """Connect to ``endpoint``; by default $FLAME_ENDPOINT, else the current context of the
        client config (``config``, default ~/.flame/flame.yaml), else http://127.0.0.1:8080.

        ``token`` (default $FLAME_TOKEN, then the context's) authenticates every call.
        Raises Unavailable when the cluster cannot be reached within ``timeout`` seconds.
        """
        resolved = _resolve_endpoint(endpoint, ca_file, config_path=config, token=token)
        channel = open_channel(resolved)
        try:
            await wait_until_ready(channel, resolved, timeout)
        except BaseException:
            await channel.close()
            raise
        logger.debug("connected to %s", resolved.url)
        connection = cls(resolved, channel)
        connection._cache_config_path = config  # the object cache is found through the same file
        connection._cache_token = resolved.token
        return connection

    @property
    def endpoint(self) -> str:
        return self._endpoint.url

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop the background work of this connection's sessions (without closing them) and disconnect."""
        if self._closed:
            return
        self._closed = True
        error = InvalidState(f"the connection to {self._endpoint.url} was closed before the task completed")
        for session in list(self._sessions):
            await session._detach(error)
        self._sessions.clear()
        await self._channel.close()

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- applications -------------------------------------------------------------------------

    async def register_application(self, name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
        """Register application ``name``; ``spec`` may be a flamepy-style dict."""
        request = frontend_pb2.RegisterApplicationRequest(name=name, application=_spec_pb(spec))
        _check_result(await self._call(f"register application {name}", self._frontend.RegisterApplication, request))

    async def update_application(self, name: str, spec: ApplicationSpec | Mapping[str, Any]) -> None:
        request = frontend_pb2.UpdateApplicationRequest(name=name, application=_spec_pb(spec))
        _check_result(await self._call(f"update application {name}", self._frontend.UpdateApplication, request))

    async def unregister_application(self, name: str) -> None:
        request = frontend_pb2.UnregisterApplicationRequest(name=name)
        what = f"unregister application {name}"
        _check_result(await self._call(what, self._frontend.UnregisterApplication, request))

    async def get_application(self, name: str) -> Application | None:
        """The application called ``name``, or None when there is none (as in flamepy)."""
        request = frontend_pb2.GetApplicationRequest(name=name)
        try:
            message = await self._call(f"get application {name}", self._frontend.GetApplication, request)
        except NotFound:
            return None
        return application_from_pb(message)

    async def list_applications(self) -> list[Application]:
        request = frontend_pb2.ListApplicationRequest()
        message = await self._call("list applications", self._frontend.ListApplication, request)
        return [application_from_pb(app) for app in message.applications]

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(
        self,
        application: str,
        common_data: bytes | ObjectRef | None = None,
        *,
        session_id: str | None = None,
        min_instances: int = 0,
        max_instances: int | None = None,
        priority: int = 0,
        resreq: ResourceRequirement | str | None = None,
        batch_size: int = 1,
        weight: float | None = None,
    ) -> AsyncSession:
        """Create a session of ``application``; ``session_id`` defaults to ``<application>-<random>``."""
        spec = session_spec(
            application,
            common_data,
            min_instances=min_instances,
            max_instances=max_instances,
            priority=priority,
            resreq=resreq,
            batch_size=batch_size,
        )
        if weight is not None and not 0 < weight <= 1e6:  # checked before anything is created
            raise InvalidArgument(f"invalid weight {weight!r}: expected 0 < weight <= 1e6 (default 1)")
        session_id = session_id or new_session_id(application)
        request = frontend_pb2.CreateSessionRequest(session_id=session_id, session=session_spec_to_pb(spec))
        message = await self._call(f"create session {session_id}", self._frontend.CreateSession, request)
        if weight is not None:  # ours, on FrontendExt: flame.v1's SessionSpec has no weight
            weighted = ext_pb2.SetSessionWeightRequest(session_id=session_id, weight=weight)
            message = await self._call(f"set the weight of session {session_id}", self._ext.SetSessionWeight, weighted)
        return AsyncSession(self, session_from_pb(message))

    async def open_session(self, session_id: str, spec: SessionSpec | None = None) -> AsyncSession:
        """Open session ``session_id``; when it does not exist and ``spec`` is given, create it."""
        request = frontend_pb2.OpenSessionRequest(session_id=session_id)
        if spec is not None:
            request.session.CopyFrom(session_spec_to_pb(spec))
        message = await self._call(f"open session {session_id}", self._frontend.OpenSession, request)
        return AsyncSession(self, session_from_pb(message))

    async def get_session(self, session_id: str) -> AsyncSession:
        return AsyncSession(self, await self._get_session_info(session_id))

    async def list_sessions(self) -> list[AsyncSession]:
        message = await self._call("list sessions", self._frontend.ListSession, frontend_pb2.ListSessionRequest())
        return [AsyncSession(self, session_from_pb(s)) for s in message.sessions]

    async def close_session(self, session_id: str) -> AsyncSession:
        """Close session ``session_id``; a session object of this connection stops its work too."""
        for session in list(self._sessions):
            if session.id == session_id:
                await session.close()
                return session
        return AsyncSession(self, await self._close_session_rpc(session_id))

    # -- cluster ------------------------------------------------------------------------------

    async def list_executors(self) -> list[Executor]:
        """Executors with their log files; from a cluster without FrontendExt, without them."""
        self._check_open()
        try:
            details = await self._ext.ListExecutorDetails(ext_pb2.ListExecutorDetailsRequest())
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise self._map_error(exc, "list executors") from exc
            message = await self._call(
                "list executors", self._frontend.ListExecutor, frontend_pb2.ListExecutorRequest()
            )
            return [executor_from_pb(e) for e in message.executors]
        executors = []
        for detail in details.executors:
            executor = executor_from_pb(detail.executor)
            executor.log_file = detail.log_file if detail.HasField("log_file") else None
            executor.application = detail.application if detail.HasField("application") else None
            executors.append(executor)
        return executors

    async def list_nodes(self) -> list[Node]:
        message = await self._call("list nodes", self._frontend.ListNodes, frontend_pb2.ListNodesRequest())
        return [node_from_pb(n) for n in message.nodes]

    # -- used by AsyncSession -----------------------------------------------------------------

    async def _get_session_info(self, session_id: str) -> SessionInfo:
        request = frontend_pb2.GetSessionRequest(session_id=session_id)
        return session_from_pb(await self._call(f"get session {session_id}", self._frontend.GetSession, request))

    async def _close_session_rpc(self, session_id: str) -> SessionInfo:
        request = frontend_pb2.CloseSessionRequest(session_id=session_id)
        return session_from_pb(await self._call(f"close session {session_id}", self._frontend.CloseSession, request))

    async def _call(self, what: str, method: Any, request: Any) -> Any:
        self._check_open()
        try:
            return await method(request)
        except grpc.RpcError as exc:
            raise self._map_error(exc, what) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState(f"the connection to {self._endpoint.url} is closed")

    def _map_error(self, exc: grpc.RpcError, what: str) -> FlameError:
        error = error_from_rpc(exc if isinstance(exc, grpc.Call) else _AioCall(exc), what)
        if isinstance(error, Unavailable):
            return unreachable(self._endpoint, error.message)
        return error

    def _track(self, session: AsyncSession) -> None:
        self._check_open()
        self._sessions.add(session)

    def _untrack(self, session: AsyncSession) -> None:
        self._sessions.discard(session)


class _AioCall(grpc.RpcError, grpc.Call):
    """Shows a grpc.aio error as the grpc.Call that error_from_rpc reads its code from.

    TODO(protocol): drop once flame.protocol.error_from_rpc reads grpc.aio.AioRpcError itself.
    """

    def __init__(self, exc: Any) -> None:
        self._exc = exc

    def code(self) -> Any:
        return self._exc.code() if hasattr(self._exc, "code") else grpc.StatusCode.UNKNOWN

    def details(self) -> Any:
        return self._exc.details() if hasattr(self._exc, "details") else str(self._exc)

    def initial_metadata(self) -> Any:
        return None

    def trailing_metadata(self) -> Any:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _spec_pb(spec: ApplicationSpec | Mapping[str, Any]) -> Any:
    return application_spec_to_pb(application_spec(spec))


def _check_result(result: Any) -> None:
    """Frontend calls that answer with a Result report failure in return_code."""
    if result.return_code != 0:
        raise Internal(result.message or f"the cluster answered with return code {result.return_code}")
