"""The host shim: one service process per binding, serving flame.v1.Instance on a Unix socket.

The process gets its own process group (so stopping it also stops whatever it started), appends its
stdout and stderr to the executor's log file, and is stopped with escalation: SIGTERM to the group,
``stop_grace`` seconds, SIGKILL to the group, reap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc

from flame.config import CommandAllowlist, command_line, read_token_file
from flame.errors import InvalidArgument
from flame.executor_manager._settings import AgentSettings
from flame.executor_manager.shims._errors import ServiceLost, ShimError
from flame.executor_manager.shims._launch import Launch, cache_credentials, plan_launch
from flame.executor_manager.shims._stream import TaskStream, open_task_stream
from flame.executor_manager.shims._warm import WarmPool, warm_entry
from flame.protocol import shim_pb2, shim_pb2_grpc, types_pb2
from flame.types import ApplicationSpec, Shim

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # The socket appears a moment before the service listens: retry connecting quickly.
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
]
# Status codes that mean the service went away rather than that it answered with an error.
_HANG_UP = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
_EXIT_WAIT = 1.0


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def rpc_status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a failed call (grpc.aio errors are not grpc.Call instances)."""
    if isinstance(exc, (grpc.Call, grpc.aio.AioRpcError)):
        code = exc.code()
        return code, exc.details() or code.name
    return grpc.StatusCode.UNKNOWN, str(exc) or type(exc).__name__


class HostService:
    """A started service: call it through :meth:`enter`, :meth:`invoke` and :meth:`leave`, then :meth:`stop`."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        launch: Launch,
        log_file: Path,
        log_offset: int,
        stop_grace: float,
        warm: WarmPool | None = None,
        warm_started: bool = False,
    ) -> None:
        self._process = process
        self._warm = warm  # released when this service stops
        self.warm_started = warm_started
        self._launch = launch
        self._log_file = log_file
        self._log_offset = log_offset
        self._stop_grace = stop_grace
        self._channel: Any = None
        self._stub: Any = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._pid_file: Path | None = None

    @classmethod
    async def start(
        cls,
        settings: AgentSettings,
        *,
        executor_id: str,
        session_id: str,
        application: str,
        spec: ApplicationSpec,
        warm: WarmPool | None = None,
    ) -> HostService:
        """Start the service and wait until it serves on its socket; ShimError says why it did not.

        With ``warm``, the service holds one of the node's slots in it until stopped, and starts in
        a warm interpreter when its command allows (see :mod:`._warm`)."""
        if spec.shim != Shim.HOST:
            raise ShimError(f"application {application} needs the {spec.shim.name} shim; this node runs Host only")
        allowlist = CommandAllowlist(settings.allowed_commands)
        if not allowlist.allows(spec):  # defence in depth: the session manager checked it at registration
            raise ShimError(
                f"node {settings.node_name} refuses application {application}: command {command_line(spec)!r} "
                "is not in its executor_manager.allowed_commands"
            )
        launch = plan_launch(
            application=application,
            spec=spec,
            executor_id=executor_id,
            session_id=session_id,
            work_dir=settings.work_dir,
            socket_dir=settings.socket_dir,
            base_env={**os.environ, **_cache_credentials(settings), **dict(settings.service_env)},
        )
        log_file = settings.log_dir / f"{executor_id}.log"
        try:
            for directory in (launch.cwd, settings.socket_dir, settings.log_dir):
                directory.mkdir(parents=True, exist_ok=True)
            launch.socket_path.unlink(missing_ok=True)
        except OSError as exc:
            raise ShimError(f"cannot prepare application {application}: {exc}") from exc
        if warm is not None:
            warm.acquire()
        try:
            process, log_offset, warm_started = await _spawn(
                launch, log_file, application=application, session_id=session_id, warm=warm
            )
        except BaseException:
            if warm is not None:
                warm.release()
            raise
        service = cls(process, launch, log_file, log_offset, settings.stop_grace, warm, warm_started)
        try:
            await service._wait_ready(settings.service_start_timeout)
        except BaseException:
            await service.stop()
            raise
        # Recorded once it serves: by then the launcher has become the service (see _DIE_WITH_US).
        service._pid_file = _record_pid(settings.work_dir, executor_id, process.pid)
        return service

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def log_file(self) -> Path:
        return self._log_file

    @property
    def socket_path(self) -> Path:
        return self._launch.socket_path

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        return int(await self._process.wait())

    async def enter(self, context: shim_pb2.SessionContext) -> None:
        try:
            result = await self._stub.OnSessionEnter(context)
        except grpc.RpcError as exc:
            raise await self._call_failed("OnSessionEnter", exc) from exc
        if result.return_code != 0:
            raise ShimError(
                f"OnSessionEnter failed with return code {result.return_code}: {result.message or 'no message'}"
            )

    async def invoke(self, task: shim_pb2.TaskContext, timeout: float | None = None) -> types_pb2.TaskResult:
        """The service's result; ServiceLost if it died, hung up or ran past ``timeout`` seconds,
        ShimError if the call failed otherwise."""
        try:
            result: types_pb2.TaskResult = await self._stub.OnTaskInvoke(task, timeout=timeout)
        except grpc.RpcError as exc:
            if timeout is not None and rpc_status(exc)[0] == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServiceLost(
                    f"task {task.task_id} ran past its timeout of {timeout:g}s; its service was stopped"
                ) from exc
            raise await self._call_failed(f"task {task.task_id}", exc) from exc
        return result

    async def open_stream(self) -> TaskStream | None:
        """The streamed invoke of a service written with our SDK; None for any other service."""
        return await open_task_stream(self._channel)

    async def leave(self, timeout: float) -> None:
        try:
            result = await self._stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise await self._call_failed("OnSessionLeave", exc) from exc
        if result.return_code != 0:
            raise ShimError(
                f"OnSessionLeave failed with return code {result.return_code}: {result.message or 'no message'}"
            )

    async def stop(self) -> None:
        """Close the channel, SIGTERM the process group, wait, SIGKILL it, reap. Safe to call again."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._channel is not None:
                await self._channel.close()
            if self._process.returncode is None:
                self._signal_group(signal.SIGTERM)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._process.wait(), self._stop_grace)
            # Also reaches children that outlived the service or ignored SIGTERM.
            self._signal_group(signal.SIGKILL)
            if self.warm_started and self._warm is not None:
                await self._warm.reap(self._process)  # its pipes from its warm days too
            else:
                await self._process.wait()
        except BaseException:
            self._signal_group(signal.SIGKILL)
            raise
        finally:
            with contextlib.suppress(OSError):
                self._launch.socket_path.unlink(missing_ok=True)
                if self._pid_file is not None:
                    self._pid_file.unlink(missing_ok=True)
            warm, self._warm = self._warm, None
            if warm is not None:
                warm.release()
            self._stopped.set()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this binding wrote to the log ('' if none or unreadable)."""
        try:
            with self._log_file.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                start = max(self._log_offset, size - _LOG_TAIL_BYTES)
                log.seek(start)
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])

    def with_log(self, reason: str) -> str:
        """``reason`` followed by the last lines of the log, when there are any."""
        tail = self.log_tail()
        return f"{reason}; last lines of {self._log_file}:\n{tail}" if tail else reason

    async def _wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        timed_out = f"service did not listen on its socket {self.socket_path} within {timeout:g}s"
        delay = 0.005
        while not self.socket_path.exists():
            self._raise_if_exited()
            if loop.time() >= deadline:
                raise ShimError(self.with_log(timed_out))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        self._channel = grpc.aio.insecure_channel(f"unix://{self.socket_path}", options=_CHANNEL_OPTIONS)
        self._stub = shim_pb2_grpc.InstanceStub(self._channel)
        while True:
            self._raise_if_exited()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ShimError(self.with_log(timed_out))
            try:
                await asyncio.wait_for(self._channel.channel_ready(), min(remaining, 0.25))
                return
            except asyncio.TimeoutError:
                continue

    def _raise_if_exited(self) -> None:
        if self._process.returncode is not None:
            raise ShimError(self.with_log(f"service {describe_exit(self._process.returncode)} before it was ready"))

    async def failure(self, what: str, exc: grpc.RpcError) -> ShimError:
        """What a failed call means: ServiceLost if the service died or hung up, else ShimError."""
        return await self._call_failed(what, exc)

    async def _call_failed(self, what: str, exc: grpc.RpcError) -> ShimError:
        code, details = rpc_status(exc)
        if code in _HANG_UP or self._process.returncode is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._process.wait(), _EXIT_WAIT)
            if self._process.returncode is not None:
                return ServiceLost(self.with_log(f"service {describe_exit(self._process.returncode)} during {what}"))
            return ServiceLost(self.with_log(f"service hung up during {what} ({code.name}: {details})"))
        return ShimError(f"{what} failed: {code.name}: {details}")

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)


def _cache_credentials(settings: AgentSettings) -> dict[str, str]:
    """The node's credential as its services get it; the token file is read now, so a reload counts."""
    token = settings.token
    if settings.token_file is not None:
        with contextlib.suppress(InvalidArgument):  # unreadable now: the token this process has
            token = read_token_file(settings.token_file, "executor manager", "token_file")
    return cache_credentials(token, settings.tls_cert, settings.tls_key)


def _pid_dir(work_dir: Path) -> Path:
    return work_dir / "pids"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _record_pid(work_dir: Path, executor_id: str, pid: int) -> Path | None:
    """Note a running service (pid and command line) so a restarted agent can stop it."""
    path = _pid_dir(work_dir) / f"{executor_id}.pid"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{pid}\n".encode() + _cmdline(pid))
    except OSError as exc:
        logger.warning("cannot record the pid of executor %s's service: %s", executor_id, exc)
        return None
    return path


def reap_stale_services(work_dir: Path) -> int:
    """Kill the process groups of services left by an agent that died (e.g. by SIGKILL).

    A pid is killed only if the process still runs the recorded command line, so a
    reused pid is left alone. Returns how many were killed.
    """
    killed = 0
    for path in sorted(_pid_dir(work_dir).glob("*.pid")):
        try:
            first, _, cmdline = path.read_bytes().partition(b"\n")
            pid = int(first)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if cmdline and _cmdline(pid) == cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed += 1
        path.unlink(missing_ok=True)
    return killed


# Run before the service's own program, in the same process: ask the kernel for SIGKILL when the
# thread that started it (the executor manager's event loop) dies, even by SIGKILL, then exec the
# service. So no service outlives its executor manager, wherever that runs (its own process or
# inside `flame up`). Started with -S -E: no site packages, no PYTHON* variables, a few ms.
_DIE_WITH_US = (
    "import ctypes,os,sys\n"
    "ctypes.CDLL(None).prctl(1,9)\n"
    "os.getppid()==int(sys.argv[1]) or os._exit(70)\n"
    "os.execv(sys.argv[2],sys.argv[3:])\n"
)


def _resolve_command(command: str, env: Mapping[str, str], cwd: Path) -> str:
    """The program ``command`` names, as exec in ``cwd`` would find it; OSError as exec would raise."""
    if os.sep in command:
        path = os.path.join(cwd, command)  # an absolute command stays as it is
    else:
        found = shutil.which(command, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(command)
        path = found
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    if not os.access(path, os.X_OK):
        raise PermissionError(path)
    return path


async def _spawn(
    launch: Launch, log_file: Path, *, application: str, session_id: str, warm: WarmPool | None = None
) -> tuple[asyncio.subprocess.Process, int, bool]:
    """Start the process with its output appended to ``log_file``: the process, where its output
    starts, and whether a warm interpreter became it."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = f"==== {stamp} session {session_id} (application {application}): {shlex.join(launch.argv)}\n"
    try:
        with log_file.open("ab") as log:
            log.write(header.encode())
            log.flush()
            offset = log.tell()
            try:
                program = _resolve_command(launch.argv[0], launch.env, launch.cwd)
            except OSError as exc:
                reason = _spawn_error(application, launch.argv[0], exc)
                log.write(f"flame: {reason}\n".encode())
                raise ShimError(reason) from exc
            entry = warm_entry(launch, program) if warm is not None else None
            if warm is not None and entry is not None:
                while (process := warm.take()) is not None:
                    if await warm.launch(process, entry, launch, log_file):
                        return process, offset, True
            wrapped = [sys.executable, "-S", "-E", "-c", _DIE_WITH_US, str(os.getpid()), program, *launch.argv]
            try:
                process = await asyncio.create_subprocess_exec(
                    *wrapped,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=launch.cwd,
                    env=launch.env,
                    start_new_session=True,
                )
            except OSError as exc:
                reason = _spawn_error(application, launch.argv[0], exc)
                log.write(f"flame: {reason}\n".encode())
                raise ShimError(reason) from exc
    except OSError as exc:
        raise ShimError(f"cannot open log file {log_file}: {exc}") from exc
    return process, offset, False


def _spawn_error(application: str, command: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"cannot start application {application}: command {command!r} not found"
    if isinstance(exc, PermissionError):
        return f"cannot start application {application}: command {command!r} is not executable"
    return f"cannot start application {application}: {command!r}: {exc.strerror or exc}"


__all__ = ["LOG_TAIL_LINES", "HostService", "describe_exit", "rpc_status"]
