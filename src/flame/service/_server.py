"""Serve a FlameService as flame.v1.Instance on the executor's Unix socket."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import stat
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from flame.errors import InvalidArgument, InvalidState
from flame.protocol import ext_pb2_grpc, shim_pb2_grpc, types_pb2
from flame.service._base import FlameService
from flame.service._batch import InstanceExtServicer, as_output, check_task, describe
from flame.service._context import ApplicationContext, SessionContext, TaskContext
from flame.types import Shim

logger = logging.getLogger(__name__)

INSTANCE_ENDPOINT_ENV = "FLAME_INSTANCE_ENDPOINT"
STOP_GRACE = 5.0


async def _call_user(method: Callable[..., Any], *args: Any) -> Any:
    """Await an ``async def`` method; run a plain one in a worker thread."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    result = await asyncio.to_thread(method, *args)
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        return await result
    return result


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _session_context(request: Any) -> SessionContext:
    app = request.application
    application = ApplicationContext(
        name=app.name,
        image=_opt(app, "image"),
        command=_opt(app, "command"),
        working_directory=_opt(app, "working_directory"),
        url=_opt(app, "url"),
        shim=Shim(app.shim) if app.shim in Shim._value2member_map_ else Shim.HOST,
        installer=_opt(app, "installer"),
    )
    return SessionContext(request.session_id, application, _opt(request, "common_data"))


class InstanceServicer(shim_pb2_grpc.InstanceServicer):
    """flame.v1.Instance over a FlameService: one session at a time, tasks only inside it."""

    def __init__(self, service: FlameService) -> None:
        self._service = service
        self._session: SessionContext | None = None

    async def OnSessionEnter(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        session = _session_context(request)
        if self._session is not None and self._session.session_id != session.session_id:
            message = (
                f"already bound to session {self._session.session_id}; leave it before entering {session.session_id}"
            )
            return types_pb2.Result(return_code=-1, message=message)
        try:
            await _call_user(self._service.on_session_enter, session)
        except Exception as exc:
            logger.error("on_session_enter failed for session %s\n%s", session.session_id, traceback.format_exc())
            return types_pb2.Result(return_code=-1, message=describe(exc))
        self._session = session
        logger.info("entered session %s (application %s)", session.session_id, session.application.name)
        return types_pb2.Result(return_code=0)

    async def OnTaskInvoke(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        task = TaskContext(task_id=request.task_id, session_id=request.session_id, input=_opt(request, "input"))
        refusal = check_task(self._session, task)
        if refusal is not None:
            return types_pb2.TaskResult(return_code=-1, message=refusal)
        try:
            output = as_output(await _call_user(self._service.on_task_invoke, task))
        except Exception as exc:
            logger.error("task %s of session %s failed\n%s", task.task_id, task.session_id, traceback.format_exc())
            return types_pb2.TaskResult(return_code=-1, message=describe(exc))
        return types_pb2.TaskResult(return_code=0, output=output)

    @property
    def session(self) -> SessionContext | None:
        """The entered session, if any."""
        return self._session

    async def OnSessionLeave(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        session, self._session = self._session, None
        if session is None:
            return types_pb2.Result(return_code=0)  # nothing to leave; idempotent
        try:
            await _call_user(self._service.on_session_leave)
        except Exception as exc:
            logger.error("on_session_leave failed for session %s\n%s", session.session_id, traceback.format_exc())
            return types_pb2.Result(return_code=-1, message=describe(exc))
        logger.info("left session %s", session.session_id)
        return types_pb2.Result(return_code=0)


class InstanceServer:
    """A grpc.aio server of flame.v1.Instance on a Unix socket: start / serve / stop, or ``async with``."""

    def __init__(self, service: FlameService, endpoint: str) -> None:
        if not isinstance(service, FlameService):
            raise InvalidArgument(f"expected a FlameService instance, got {type(service).__name__}")
        self.endpoint = endpoint.removeprefix("unix://").removeprefix("unix:")
        self._service = service
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        if self._server is not None:
            raise InvalidState("instance server already started")
        _remove_stale_socket(self.endpoint)
        # Inputs, outputs and common data are bounded by the cluster's limits, not by gRPC's 4 MiB default.
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        )
        instance = InstanceServicer(self._service)
        shim_pb2_grpc.add_InstanceServicer_to_server(instance, server)
        # Our executor managers use the streamed path; flame.v1.Instance stays for everything else.
        ext_pb2_grpc.add_InstanceExtServicer_to_server(
            InstanceExtServicer(self._service.on_task_invoke, lambda: instance.session), server
        )
        try:
            bound = server.add_insecure_port(f"unix:{self.endpoint}")
        except RuntimeError as exc:
            raise InvalidArgument(f"cannot listen on Unix socket {self.endpoint}: {exc}") from exc
        if not bound:
            raise InvalidArgument(f"cannot listen on Unix socket {self.endpoint}")
        await server.start()
        self._server = server
        logger.info("serving %s on %s", type(self._service).__name__, self.endpoint)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None = STOP_GRACE) -> None:
        """Stop accepting calls, let running ones finish within ``grace`` seconds. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
            logger.info("stopped serving on %s", self.endpoint)

    async def serve(self, stop: asyncio.Event) -> None:
        """Start, run until ``stop`` is set, then stop gracefully."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> InstanceServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _remove_stale_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def run(service: FlameService) -> None:
    """Serve ``service`` on $FLAME_INSTANCE_ENDPOINT until SIGTERM or SIGINT (process entry point)."""
    endpoint = os.environ.get(INSTANCE_ENDPOINT_ENV)
    if not endpoint:
        raise InvalidArgument(
            f"${INSTANCE_ENDPOINT_ENV} is not set: a Flame service is started by an executor manager, "
            "which names the Unix socket to serve on; register the application and run tasks through a session"
        )
    server = InstanceServer(service, endpoint)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.serve(stop)

    asyncio.run(main())
