"""All-in-one cluster: a session manager in this process and a local executor manager child.

The executor manager runs in its own process so that the session manager and the
node's agent use different cores. It is started with a parent-death signal, so it
goes away even if this process is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from flame.apps import builtin_applications
from flame.config import CacheConfig, ClusterConfig
from flame.errors import AlreadyExists, Unavailable
from flame.object_cache import ObjectCache
from flame.session_manager.server import SessionManager
from flame.types import NodeState, ResourceRequirement

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Set on the executor manager child: the pid it must die with (see die_with_parent).
PARENT_PID_ENV = "FLAME_DIE_WITH_PARENT"


def die_with_parent() -> None:
    """In a child started by AllInOne: get SIGTERM when the parent dies, even by SIGKILL.

    Done by the child itself at start-up rather than in a preexec_fn, so the parent can
    spawn it without fork() (a fork while gRPC threads run is unsafe).
    """
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent is None:
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class AllInOne:
    """start() / serve() / shutdown(), or ``async with``."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        executors: int | None = None,
        node_name: str | None = None,
        log_level: str = "INFO",
        ready_timeout: float = 30.0,
        cache: CacheConfig | None = None,
    ) -> None:
        self.config = config
        self.session_manager = SessionManager(config)
        # The object cache runs in this process: its Flight server has its own threads.
        self.object_cache = ObjectCache(cache) if cache is not None else None
        self.executors = executors
        self.node_name = node_name or socket.gethostname()
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self.work_dir = Path(config.data_dir) / "executors"
        self._agent: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return self.session_manager.endpoint

    @property
    def cache_endpoint(self) -> str | None:
        return self.object_cache.endpoint if self.object_cache is not None else None

    async def start(self) -> None:
        await self.session_manager.start()
        try:
            if self.object_cache is not None:
                await asyncio.to_thread(self.object_cache.start)
            await self._register_builtin_applications()
            self._agent = self._spawn_agent()
            await self._wait_for_node()
        except BaseException:
            await self.shutdown()
            raise

    async def _register_builtin_applications(self) -> None:
        for name, spec in builtin_applications(self.config.builtin_applications).items():
            with contextlib.suppress(AlreadyExists):
                await self.session_manager.controller.register_application(name, spec)

    def _spawn_agent(self) -> subprocess.Popen[bytes]:
        args = [
            sys.executable,
            "-m",
            "flame",
            "--log-level",
            self.log_level,
            "executor-manager",
            "--session-manager",
            self._local_endpoint(),
            "--node-name",
            self.node_name,
            "--work-dir",
            str(self.work_dir),
        ]
        if self.executors is not None:
            # Room for that many executors of the cluster's slot, whatever the machine has:
            # asking for N executors on a smaller machine oversubscribes it, as asked.
            slot = self.config.slot
            capacity = ResourceRequirement(
                cpu=slot.cpu * self.executors, memory=slot.memory * self.executors, gpu=slot.gpu * self.executors
            )
            args += ["--max-executors", str(self.executors), "--capacity", str(capacity)]
        env = dict(os.environ)
        env.pop("FLAME_SESSION_MANAGER", None)
        for name in ("FLAME_CA_FILE", "FLAME_CERT_FILE", "FLAME_KEY_FILE"):
            env.pop(name, None)
        tls = self.config.tls
        if tls is not None:  # trust the CA, or for a self-signed certificate the certificate itself
            env["FLAME_CA_FILE"] = tls.ca_file or tls.cert_file
            if tls.ca_file:  # mutual TLS: the local agent shows the server's own certificate
                env["FLAME_CERT_FILE"], env["FLAME_KEY_FILE"] = tls.cert_file, tls.key_file
        if self.object_cache is not None:  # services (flamepy's get_object) find the cache here
            env["FLAME_CACHE_ENDPOINT"] = self.object_cache.endpoint
        env[PARENT_PID_ENV] = str(os.getpid())
        return subprocess.Popen(args, env=env)

    def _local_endpoint(self) -> str:
        """The session manager as the local executor manager reaches it."""
        host = self.config.endpoint.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        scheme = "https" if self.config.tls is not None else "http"
        port = self.session_manager.backend_port or self.session_manager.port
        return f"{scheme}://{host}:{port}"

    async def _wait_for_node(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        nodes = self.session_manager.controller.nodes
        while time.monotonic() < deadline:
            rec = nodes.get(self.node_name)
            if rec is not None and rec.node.state == NodeState.READY and rec.link is not None:
                return
            assert self._agent is not None
            if self._agent.poll() is not None:
                raise Unavailable(f"the executor manager exited with code {self._agent.returncode} during start-up")
            await asyncio.sleep(0.05)
        raise Unavailable(f"the executor manager did not register within {self.ready_timeout:.0f}s")

    async def serve(self) -> None:
        """Run until shutdown() or until the executor manager dies."""
        stopped = asyncio.create_task(self.session_manager.serve())
        try:
            while not stopped.done():
                if self._agent is not None and self._agent.poll() is not None:
                    logger.error("the executor manager exited with code %s; stopping", self._agent.returncode)
                    break
                await asyncio.wait({stopped}, timeout=0.5)
        finally:
            stopped.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopped

    async def shutdown(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            await asyncio.to_thread(stop_process, agent, grace=10.0)
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


def stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; always reaps the process."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("process %d ignored SIGTERM for %.0fs; killing it", process.pid, grace)
            process.kill()
    process.wait()
