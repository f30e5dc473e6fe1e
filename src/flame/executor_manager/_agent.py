"""The executor manager: registers this node with the session manager and carries out its orders.

One bidirectional Backend stream connects it to the session manager. Three coroutines serve a
connection (receiver, sender, heartbeat); one worker per executor outlives connections, so services
keep running across a session manager restart while outcomes wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol

import grpc

from flame.config import read_token_file
from flame.errors import InvalidArgument, InvalidState
from flame.executor_manager._compat import TaskGroup
from flame.executor_manager._executor import Command, Executor, Release, Unbind
from flame.executor_manager._metrics import AgentMetrics
from flame.executor_manager._outbox import Outbox
from flame.executor_manager._settings import AgentSettings
from flame.executor_manager.shims import ShimError, WarmPool, reap_stale_services, rpc_status, socket_path_for
from flame.protocol import backend_pb2, backend_pb2_grpc, resreq_from_pb, resreq_to_pb, types_pb2, wire_enum
from flame.types import ExecutorState

logger = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
REGISTER_TIMEOUT = 10.0
# How long shutdown waits for the last reports to go out before it closes the stream anyway.
FLUSH_TIMEOUT = 2.0
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class BackendCall(Protocol):
    """What the agent uses of a Backend.Connect call (a grpc.aio stream, or an in-process link)."""

    async def write(self, message: backend_pb2.AgentMessage) -> None: ...
    async def read(self) -> Any: ...  # a ManagerMessage, or grpc.aio.EOF at the end
    async def done_writing(self) -> None: ...
    def cancel(self) -> bool: ...
    async def aclose(self) -> None: ...  # after cancel(): release what the call holds


class _GrpcCall:
    """Backend.Connect over a gRPC channel of its own."""

    def __init__(self, channel: Any, metadata: tuple[tuple[str, str], ...] | None = None) -> None:
        self._channel = channel
        self._call = backend_pb2_grpc.BackendStub(channel).Connect(metadata=metadata)

    async def write(self, message: backend_pb2.AgentMessage) -> None:
        await self._call.write(message)

    async def read(self) -> Any:
        return await self._call.read()

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    async def aclose(self) -> None:
        await self._channel.close()


Connect = Callable[[], Awaitable[BackendCall]]


class ExecutorManager:
    """``start()``, then ``serve()`` until ``shutdown()``; or ``async with`` around ``serve()``."""

    def __init__(
        self, settings: AgentSettings, *, connect: Connect | None = None, warm: WarmPool | None = None
    ) -> None:
        """``connect`` opens the Backend stream; by default a gRPC call to ``settings.session_manager``
        (the all-in-one passes an in-process link instead). ``warm``: warm interpreters started
        ahead of this object (for ``settings.max_executors`` slots), which it then owns; by default
        it starts its own when ``settings.warm_services``."""
        self._settings = settings
        self._connect = connect
        self._outbox = Outbox()
        self._executors: dict[str, Executor] = {}
        self._workers: dict[Executor, asyncio.Task[None]] = {}
        self._tg: TaskGroup | None = None
        self._heartbeat_interval = settings.heartbeat_interval_ms / 1000
        self._last_sent = 0.0
        self._tls_ca: bytes | None = None
        self._tls_identity: tuple[bytes, bytes] | None = None  # (key, certificate chain)
        self._token = settings.token
        self._accepting = True
        self._connected = False
        self._started = False
        self._serving = False
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self.metrics = AgentMetrics(settings.node_name) if settings.metrics_port is not None else None
        # One warm interpreter per free executor slot (a node without a slot limit keeps none).
        if warm is None and settings.warm_services and settings.max_executors > 0:
            warm = WarmPool.for_node(settings.max_executors, settings.work_dir)
        self._warm = warm

    @property
    def settings(self) -> AgentSettings:
        return self._settings

    @property
    def connected(self) -> bool:
        """Registered with the session manager right now."""
        return self._connected

    @property
    def executor_ids(self) -> list[str]:
        return list(self._executors)

    @property
    def warm_interpreters(self) -> int:
        """Warm interpreters waiting for a service to become (one per free executor slot)."""
        return self._warm.idle if self._warm is not None else 0

    async def start(self) -> None:
        """Create the working directories. Connecting happens in :meth:`serve` (and is retried)."""
        if self._started:
            return
        settings = self._settings
        try:
            socket_path_for(settings.socket_dir, "probe")
        except ShimError as exc:
            raise InvalidArgument(exc.message) from exc
        if settings.tls_ca is not None:
            try:
                self._tls_ca = settings.tls_ca.read_bytes()
            except OSError as exc:
                raise InvalidArgument(f"cannot read the session manager's CA file {settings.tls_ca}: {exc}") from exc
        if settings.tls_cert is not None and settings.tls_key is not None:
            try:
                self._tls_identity = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
            except OSError as exc:
                raise InvalidArgument(f"cannot read this executor manager's certificate or key: {exc}") from exc
        for directory in (settings.work_dir, settings.log_dir, settings.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        stale = reap_stale_services(settings.work_dir)
        if stale:
            logger.warning("stopped %d service process(es) left by a previous executor manager", stale)
        if self.metrics is not None and settings.metrics_port is not None:
            self.metrics.serve(settings.metrics_port, settings.metrics_host)
        self._started = True

    async def serve(self) -> None:
        """Run until :meth:`shutdown`: stay connected to the session manager and run its executors."""
        if self._serving or self._done.is_set():
            raise InvalidState("this executor manager is serving already or has been shut down")
        await self.start()
        self._serving = True
        try:
            async with TaskGroup() as tg:
                self._tg = tg
                if self._warm is not None:
                    self._warm.fill()
                connection = tg.create_task(self._connect_loop())
                await self._stop.wait()
                await self._drain(connection)
        finally:
            self._tg = None
            if self.metrics is not None:
                self.metrics.stop()
            self._done.set()

    async def shutdown(self) -> None:
        """Stop taking commands, stop every service, flush the last reports, close the stream. Idempotent."""
        if not self._stop.is_set():
            logger.info("executor manager %s shutting down", self._settings.node_name)
        self._accepting = False
        self._stop.set()
        if self._serving:
            await self._done.wait()

    def reload_token(self) -> None:
        """Re-read ``settings.token_file`` (on SIGHUP): the next connection sends the new token."""
        path = self._settings.token_file
        if path is None:
            logger.info("no token file to reload")
            return
        try:
            self._token = read_token_file(path, "executor manager", "token_file")
        except InvalidArgument as exc:
            logger.error("keeping the previous token: %s", exc.message)
            return
        logger.info("reloaded the token from %s", path)

    async def __aenter__(self) -> ExecutorManager:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    # ---- lifecycle ----

    async def _drain(self, connection: asyncio.Task[None]) -> None:
        if self._warm is not None:
            await self._warm.close()  # before the services stop, whose slots would get new ones
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)
        self._outbox.close()
        if self._connected:
            # The sender flushes the outbox and half-closes; the session manager then ends the call.
            await asyncio.wait({connection}, timeout=FLUSH_TIMEOUT)
        connection.cancel()  # no-op once it has ended; else stop flushing or connecting

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise InvalidState("the executor manager is not serving")
        return self._tg.create_task(coro)

    async def _run_executor(self, executor: Executor) -> None:
        try:
            await executor.run()
        finally:
            self._workers.pop(executor, None)
            if self._executors.get(executor.id) is executor:
                del self._executors[executor.id]

    # ---- connection ----

    async def _connect_loop(self) -> None:
        backoff = INITIAL_BACKOFF
        quiet = False  # after one INFO line about an outage, further failed attempts log at DEBUG
        while not self._stop.is_set():
            registered, reason = await self._connection()
            if self._stop.is_set():
                return
            if registered:
                backoff, quiet = INITIAL_BACKOFF, False
            delay = random.uniform(backoff / 2, backoff)
            what = "lost the connection to" if registered else "cannot reach"
            logger.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s session manager %s (%s); reconnecting",
                what,
                self._settings.session_manager,
                reason,
            )
            quiet = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _connection(self) -> tuple[bool, str]:
        """One connection: register, then serve the stream until it breaks. (registered?, why it ended)."""
        if self._connect is not None:
            call = await self._connect()
        else:
            metadata = (("authorization", f"Bearer {self._token}"),) if self._token else None
            call = _GrpcCall(self._open_channel(), metadata)
        try:
            try:
                first = await asyncio.wait_for(self._register(call), REGISTER_TIMEOUT)
            except (grpc.RpcError, grpc.aio.UsageError) as exc:
                return False, _rpc_reason(exc)
            except asyncio.TimeoutError:
                return False, f"registration not answered within {REGISTER_TIMEOUT:g}s"
            if first is grpc.aio.EOF or not first.HasField("registered"):
                logger.error("session manager did not answer the registration with Registered: %s", first)
                return False, "protocol error: the first message was not Registered"
            self._connected = True
            logger.info(
                "connected to session manager %s as node %s (executors held: %d)",
                self._settings.session_manager,
                self._settings.node_name,
                len(self._executors),
            )
            self._dispatch(first)
            return True, await self._stream(call)
        finally:
            self._connected = False
            call.cancel()
            await call.aclose()

    async def _register(self, call: BackendCall) -> Any:
        await call.write(backend_pb2.AgentMessage(register=self._registration()))
        self._last_sent = asyncio.get_running_loop().time()
        return await call.read()

    def _open_channel(self) -> Any:
        target = self._settings.session_manager
        if self._tls_ca is None and not self._settings.tls and self._tls_identity is None:
            return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        key, chain = self._tls_identity or (None, None)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self._tls_ca, private_key=key, certificate_chain=chain
        )
        return grpc.aio.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)

    def _registration(self) -> backend_pb2.RegisterNode:
        return backend_pb2.RegisterNode(
            name=self._settings.node_name,
            capacity=resreq_to_pb(self._settings.capacity),
            info=types_pb2.NodeInfo(arch=platform.machine(), os=platform.system().lower()),
            addresses=[types_pb2.NodeAddress(type="Hostname", address=socket.gethostname())],
            executors=[executor.snapshot() for executor in self._executors.values()],
            max_executors=self._settings.max_executors,
        )

    async def _stream(self, call: BackendCall) -> str:
        """Run receiver, sender and heartbeat until one of them sees the stream end; why it ended."""
        ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        async with TaskGroup() as tg:
            tasks = [
                tg.create_task(self._receive(call, ended)),
                tg.create_task(self._send(call, ended)),
                tg.create_task(self._heartbeat()),
            ]
            reason = await ended
            for task in tasks:
                task.cancel()
        return reason

    async def _receive(self, call: BackendCall, ended: asyncio.Future[str]) -> None:
        while True:
            try:
                message = await call.read()
            except grpc.RpcError as exc:
                _end(ended, _rpc_reason(exc))
                return
            if message is grpc.aio.EOF:
                _end(ended, "the session manager closed the stream")
                return
            self._dispatch(message)

    async def _send(self, call: BackendCall, ended: asyncio.Future[str]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._outbox.wait()
            # Only outcomes of executors that still have tasks queued are waiting: let more join
            # them, sending at most one message per batch window. Anything urgent goes at once.
            gap = self._last_sent + self._settings.batch_window - loop.time()
            if gap > 0 and not self._outbox.urgent:
                await self._outbox.wait_urgent(gap)
            closing = self._outbox.closed
            messages = self._outbox.take()
            for index, message in enumerate(messages):
                try:
                    await call.write(message)
                except (grpc.RpcError, grpc.aio.UsageError) as exc:
                    self._outbox.give_back(messages[index:])
                    _end(ended, _rpc_reason(exc))
                    return
                except asyncio.CancelledError:
                    self._outbox.give_back(messages[index:])
                    raise
                self._last_sent = loop.time()
            if closing and not self._outbox:
                # Half-close; the receiver sees the session manager end the call once it has read everything.
                with contextlib.suppress(grpc.RpcError, grpc.aio.UsageError):
                    await call.done_writing()
                return

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self._last_sent + self._heartbeat_interval - loop.time()
            if delay <= 0:
                self._outbox.request_heartbeat()
                delay = self._heartbeat_interval
            await asyncio.sleep(delay)

    # ---- commands ----

    def _dispatch(self, message: backend_pb2.ManagerMessage) -> None:
        """Hand the commands of one message to their executors: create, bind, run, unbind, release."""
        if message.HasField("registered") and message.registered.heartbeat_interval_ms:
            self._heartbeat_interval = message.registered.heartbeat_interval_ms / 1000
        if not self._accepting:
            return
        for create in message.create:
            self._create(create)
        unknown: set[str] = set()
        for bind in message.bind:
            self._post(bind.executor_id, bind, unknown)
        for run in message.run:
            if not self._post(run.executor_id, run, unknown):
                reason = f"executor {run.executor_id} does not exist on node {self._settings.node_name}"
                self._outbox.put(
                    backend_pb2.TaskOutcome(
                        executor_id=run.executor_id,
                        session_id=run.task.session_id,
                        task_id=run.task.task_id,
                        state=types_pb2.Failed,
                        message=reason,
                        retryable=True,
                    )
                )
        for unbind in message.unbind:
            self._post(unbind.executor_id, Unbind(), unknown)
        for release in message.release:
            self._post(release.executor_id, Release(), unknown)

    def _create(self, create: backend_pb2.CreateExecutor) -> None:
        existing = self._executors.get(create.executor_id)
        if existing is not None and not existing.release_requested:
            logger.debug("executor %s exists already", create.executor_id)
            self._outbox.put(existing.snapshot())
            return
        limit = self._settings.max_executors
        if limit and len(self._executors) >= limit:
            logger.warning("refusing executor %s: node hosts %d executors (its limit)", create.executor_id, limit)
            self._outbox.put(
                backend_pb2.ExecutorReport(
                    executor_id=create.executor_id,
                    state=wire_enum(ExecutorState.RELEASED),
                    message=f"node {self._settings.node_name} hosts its limit of {limit} executors already",
                )
            )
            return
        executor = Executor(
            create.executor_id,
            resreq_from_pb(create.resreq),
            settings=self._settings,
            outbox=self._outbox,
            spawn=self._spawn,
            metrics=self.metrics,
            warm=self._warm,
        )
        self._executors[executor.id] = executor
        self._workers[executor] = self._spawn(self._run_executor(executor))
        self._outbox.put(executor.snapshot())
        logger.info("executor %s created (%s)", executor.id, executor.resreq)

    def _post(self, executor_id: str, command: Command, unknown: set[str]) -> bool:
        executor = self._executors.get(executor_id)
        if executor is not None and not executor.release_requested:
            executor.post(command)
            return True
        if executor_id not in unknown:
            unknown.add(executor_id)
            logger.warning("command for unknown executor %s: reporting it released", executor_id)
            self._outbox.put(
                backend_pb2.ExecutorReport(executor_id=executor_id, state=wire_enum(ExecutorState.RELEASED))
            )
        return False


def _end(ended: asyncio.Future[str], reason: str) -> None:
    if not ended.done():
        ended.set_result(reason)


def _rpc_reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code, details = rpc_status(exc)
        return f"{code.name}: {details}"
    return str(exc) or type(exc).__name__
