"""All-in-one cluster: a session manager and its local node in this one process.

The local node is the ordinary executor manager, connected to the session manager by an
in-memory link instead of a loopback gRPC stream: the same messages pass between them as
objects, so a batch of tasks costs neither side a serialise/parse leg. Multi-machine clusters
run `flame executor-manager` per node over gRPC, with the same node logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from flame.config import CacheConfig, ClusterConfig
from flame.config._agent import detect_capacity, local_node_slots, local_node_work_dir, socket_dir
from flame.errors import Unavailable
from flame.executor_manager import AgentSettings, ExecutorManager
from flame.protocol import backend_pb2
from flame.session_manager.server import SessionManager
from flame.types import NodeState, ResourceRequirement

if TYPE_CHECKING:
    from flame.executor_manager.shims import WarmPool
    from flame.object_cache import ObjectCache

logger = logging.getLogger(__name__)

ServeNode = Callable[
    [backend_pb2.RegisterNode, AsyncIterator[backend_pb2.AgentMessage]], AsyncIterator[backend_pb2.ManagerMessage]
]


class LocalBackendCall:
    """A Backend.Connect call inside one process, with the methods of a grpc.aio stream call."""

    def __init__(self, serve_node: ServeNode) -> None:
        self._serve_node = serve_node
        self._inbox: asyncio.Queue[backend_pb2.AgentMessage | None] = asyncio.Queue()
        self._responses: AsyncIterator[backend_pb2.ManagerMessage] | None = None
        self._cancelled = False

    async def write(self, message: backend_pb2.AgentMessage) -> None:
        if self._cancelled:
            raise grpc.aio.UsageError("the local Backend call was cancelled")
        if self._responses is None:  # the first message registers the node
            self._responses = self._serve_node(message.register, self._incoming())
        else:
            self._inbox.put_nowait(message)

    async def _incoming(self) -> AsyncIterator[backend_pb2.AgentMessage]:
        while (message := await self._inbox.get()) is not None:
            yield message

    async def read(self) -> Any:
        if self._responses is None or self._cancelled:
            return grpc.aio.EOF
        try:
            return await anext(self._responses)
        except StopAsyncIteration:
            return grpc.aio.EOF

    async def done_writing(self) -> None:
        self._inbox.put_nowait(None)

    def cancel(self) -> bool:
        if self._cancelled:
            return False
        self._cancelled = True
        self._inbox.put_nowait(None)
        return True

    async def aclose(self) -> None:
        """Run the session manager's end-of-stream handling (the node is disconnected)."""
        responses, self._responses = self._responses, None
        if responses is not None:
            await responses.aclose()  # type: ignore[attr-defined]


class AllInOne:
    """start() / serve() / shutdown(), or ``async with``."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        executors: int | None = None,
        node_name: str | None = None,
        ready_timeout: float = 30.0,
        cache: CacheConfig | None = None,
        warm_services: bool = True,
        warm: WarmPool | None = None,
    ) -> None:
        """``warm``: the local node's warm interpreters, already started by the caller (``flame up``
        starts them before it imports this module); else the node starts its own if ``warm_services``."""
        self.config = config
        self.warm_services = warm_services or warm is not None
        self.warm = warm
        self.session_manager = SessionManager(config)
        # The object cache runs in this process: its Flight server has its own threads. It is made
        # in start(), off the event loop: pyarrow takes longer to import than the rest of flame up.
        # It checks callers as the session manager does, with the same tokens (one SIGHUP reloads both).
        self.cache_config = dataclasses.replace(cache, auth=config.auth) if cache is not None else None
        self._service_token = ""  # the local node's credential for the cache, in token mode
        self.object_cache: ObjectCache | None = None
        self.executors = executors
        self.node_name = node_name or socket.gethostname()
        self.ready_timeout = ready_timeout
        self.work_dir = local_node_work_dir(config.data_dir)
        self.node: ExecutorManager | None = None
        self._node_task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return self.session_manager.endpoint

    @property
    def cache_endpoint(self) -> str | None:
        return self.object_cache.endpoint if self.object_cache is not None else None

    async def start(self) -> None:
        """Recover, register the local node, then listen; the object cache and the dashboard follow.

        The node joins through its in-memory link before the port listens, so a client's first
        session can bind at once. The cache's import and start-up run in a thread meanwhile, and
        start() returns once everything serves.
        """
        cache: asyncio.Task[None] | None = None

        async def start_node() -> None:
            nonlocal cache
            if self.cache_config is not None:
                cache = asyncio.create_task(asyncio.to_thread(self._start_cache, self.cache_config))
                if _planned_endpoint(self.cache_config) is None or self.cache_config.flamepy_endpoint is not None:
                    await cache  # services must be told where it listens, known only once it does
            self.node = ExecutorManager(self._node_settings(), connect=self._connect, warm=self.warm)
            await self.node.start()
            self._node_task = asyncio.create_task(self.node.serve(), name="local-node")
            await self._wait_for_node()

        self.session_manager.before_serving.append(start_node)
        try:
            await self.session_manager.start(web=False)
            if cache is not None:
                await cache
            await self.session_manager.start_web()
        except BaseException:
            if cache is not None:
                with contextlib.suppress(BaseException):
                    await cache  # never leave its thread binding a port behind
            await self.shutdown()
            raise

    def _start_cache(self, config: CacheConfig) -> None:
        from flame.object_cache import ObjectCache

        cache = ObjectCache(config, authenticator=self.session_manager.auth.tokens, owners=self._session_owner)
        cache.start()
        self.object_cache = cache

    def _session_owner(self, session_id: str) -> tuple[bool, str | None]:
        """For the object cache's threads: whether the session exists, and who owns it (a read of
        one dict entry and two attributes, which the event loop's writes cannot tear)."""
        rec = self.session_manager.controller.sessions.get(session_id)
        return (False, None) if rec is None else (True, rec.session.spec.owner)

    def _node_settings(self) -> AgentSettings:
        max_executors = local_node_slots(self.executors)
        if self.executors is not None:
            # Room for that many executors of the cluster's slot, whatever the machine has:
            # asking for N executors on a smaller machine oversubscribes it, as asked.
            slot = self.config.slot
            n = self.executors
            capacity = ResourceRequirement(cpu=slot.cpu * n, memory=slot.memory * n, gpu=slot.gpu * n)
        else:
            capacity = detect_capacity()
        return AgentSettings(
            session_manager=f"127.0.0.1:{self.session_manager.port}",  # for messages only: the link is in-process
            node_name=self.node_name,
            capacity=capacity,
            work_dir=self.work_dir,
            socket_dir=socket_dir(self.work_dir),
            max_executors=max_executors,
            allowed_commands=self.config.allowed_commands.patterns,
            service_env=self._service_env(),
            warm_services=self.warm_services,
        )

    def _service_env(self) -> tuple[tuple[str, str], ...]:
        """Where services (flamepy's get_object too) find the object cache, and what lets them in."""
        if self.cache_config is None:
            return ()
        # With a flamepy listener, services use it: flamepy's (flmrun's) put_object sends no token.
        flamepy = self.object_cache.flamepy_endpoint if self.object_cache is not None else ""
        env = {"FLAME_CACHE_ENDPOINT": flamepy or self._cache_endpoint()}
        if self.session_manager.auth.tokens is not None:
            if not self._service_token:
                self._service_token = secrets.token_urlsafe(32)
                self.session_manager.add_node_token(self._service_token, self.node_name)
            env["FLAME_CACHE_TOKEN"] = self._service_token
        tls = self.config.tls
        if self.cache_config.client_ca_file is not None and tls is not None:
            # mtls: the cluster's own certificate, which the cache accepts if its CA signed it.
            env["FLAME_CACHE_CERT_FILE"], env["FLAME_CACHE_KEY_FILE"] = tls.cert_file, tls.key_file
        return tuple(env.items())

    def _cache_endpoint(self) -> str:
        if self.object_cache is not None:
            return self.object_cache.endpoint
        assert self.cache_config is not None
        planned = _planned_endpoint(self.cache_config)
        assert planned is not None, "start() waits for a cache whose endpoint is not known in advance"
        return planned

    async def _connect(self) -> LocalBackendCall:
        return LocalBackendCall(self.session_manager.backend.serve_node)

    async def _wait_for_node(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        nodes = self.session_manager.controller.nodes
        while loop.time() < deadline:
            rec = nodes.get(self.node_name)
            if rec is not None and rec.node.state == NodeState.READY and rec.link is not None:
                return
            if self._node_task is not None and self._node_task.done():
                self._node_task.result()  # raises what stopped it
                raise Unavailable("the local executor manager stopped during start-up")
            await asyncio.sleep(0.01)
        raise Unavailable(f"the local executor manager did not register within {self.ready_timeout:.0f}s")

    async def serve(self) -> None:
        """Run until shutdown() or until the local node stops."""
        stopped = asyncio.create_task(self.session_manager.serve())
        waiting: set[asyncio.Task[None]] = {stopped}
        if self._node_task is not None:
            waiting.add(self._node_task)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if self._node_task is not None and self._node_task.done() and not stopped.done():
                logger.error("the local executor manager stopped; stopping")
        finally:
            stopped.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopped

    async def shutdown(self) -> None:
        """Stop the node (its services first), the session manager, then the object cache. Idempotent."""
        node, task, self.node, self._node_task = self.node, self._node_task, None, None
        if node is not None:
            await node.shutdown()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.session_manager.shutdown()
        if self.object_cache is not None:
            await asyncio.to_thread(self.object_cache.shutdown)

    async def __aenter__(self) -> AllInOne:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()


def _planned_endpoint(config: CacheConfig) -> str | None:
    """Where the cache will be reached, when the config alone says (a fixed port on a named host)."""
    ep = config.endpoint
    if ep.port == 0 or config.network_interface or ep.host in ("0.0.0.0", "::") or ":" in ep.host:
        return None
    return ep.location
