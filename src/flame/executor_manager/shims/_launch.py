"""How a host service is launched: argv, environment, working directory and socket path.

Pure functions of their inputs (no process is started here), so every rule is unit-tested.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flame.executor_manager.shims._errors import ShimError
from flame.types import ApplicationSpec

# The variables every service finds in its environment.
INSTANCE_ENDPOINT = "FLAME_INSTANCE_ENDPOINT"
EXECUTOR_ID = "FLAME_EXECUTOR_ID"
SESSION_ID = "FLAME_SESSION_ID"
PYTHON = "FLAME_PYTHON"
# The node's credential, for the object cache only (flame.client.cache_client reads them).
CACHE_TOKEN = "FLAME_CACHE_TOKEN"
CACHE_CERT_FILE = "FLAME_CACHE_CERT_FILE"
CACHE_KEY_FILE = "FLAME_CACHE_KEY_FILE"

# sun_path holds 108 bytes on Linux and 104 on macOS; stay clear of both.
MAX_SOCKET_PATH = 100

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    socket_path: Path


def expand(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``$VAR`` with their values in ``env``; unknown variables become ''."""
    return _VARIABLE.sub(lambda match: env.get(match.group(1) or match.group(2), ""), text)


def socket_path_for(socket_dir: Path, executor_id: str) -> Path:
    """``socket_dir/<executor_id>.sock``, or a hashed name when the id would make the path too long."""
    path = socket_dir / f"{executor_id}.sock"
    if len(os.fsencode(path)) < MAX_SOCKET_PATH:
        return path
    path = socket_dir / f"{hashlib.sha256(executor_id.encode()).hexdigest()[:16]}.sock"
    if len(os.fsencode(path)) >= MAX_SOCKET_PATH:
        raise ShimError(
            f"socket directory {str(socket_dir)!r} is too long for a Unix socket path "
            f"(limit {MAX_SOCKET_PATH} bytes): choose a shorter socket_dir"
        )
    return path


def cache_credentials(token: str | None, cert_file: Path | None, key_file: Path | None) -> dict[str, str]:
    """What lets a service reach an object cache that checks callers: the node's own credential.

    A service runs as the executor manager's user and could read that credential anyway; the
    cache accepts role node for reads and writes, the session manager only on its Backend.
    """
    env: dict[str, str] = {}
    if token:
        env[CACHE_TOKEN] = token
    if cert_file is not None and key_file is not None:
        env[CACHE_CERT_FILE], env[CACHE_KEY_FILE] = str(cert_file), str(key_file)
    return env


def service_environment(
    base: Mapping[str, str],
    spec: ApplicationSpec,
    *,
    socket_path: Path,
    executor_id: str,
    session_id: str,
) -> dict[str, str]:
    """The executor manager's environment, the application's (expanded against it) and FLAME_*."""
    expansion = {**base, PYTHON: sys.executable}
    env = dict(base)
    env.update({name: expand(value, expansion) for name, value in spec.environments.items()})
    env.update(
        {
            INSTANCE_ENDPOINT: str(socket_path),
            EXECUTOR_ID: executor_id,
            SESSION_ID: session_id,
            PYTHON: sys.executable,
        }
    )
    return env


def build_argv(application: str, spec: ApplicationSpec, env: Mapping[str, str], cwd: Path) -> list[str]:
    """The expanded command (split on spaces unless it names an existing file) and its arguments."""
    command = expand(spec.command or "", env).strip()
    if not command:
        raise ShimError(f"application {application} has no command")
    if " " in command and not (cwd / command).exists():
        try:
            head = shlex.split(command)
        except ValueError as exc:
            raise ShimError(f"application {application} has an invalid command {command!r}: {exc}") from exc
    else:
        head = [command]
    return head + [expand(argument, env) for argument in spec.arguments]


def plan_launch(
    *,
    application: str,
    spec: ApplicationSpec,
    executor_id: str,
    session_id: str,
    work_dir: Path,
    socket_dir: Path,
    base_env: Mapping[str, str],
) -> Launch:
    socket_path = socket_path_for(socket_dir, executor_id)
    env = service_environment(base_env, spec, socket_path=socket_path, executor_id=executor_id, session_id=session_id)
    # A relative working directory is taken under work_dir.
    cwd = work_dir / (expand(spec.working_directory, env) if spec.working_directory else executor_id)
    return Launch(argv=build_argv(application, spec, env, cwd), env=env, cwd=cwd, socket_path=socket_path)


__all__ = [
    "Launch",
    "build_argv",
    "cache_credentials",
    "expand",
    "plan_launch",
    "service_environment",
    "socket_path_for",
]
