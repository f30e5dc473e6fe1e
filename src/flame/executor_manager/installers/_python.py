"""``installer: python``: install a package and its declared dependencies into a target directory.

uv (``uv pip install --target``) is used when it is available: the ``uv`` package from PyPI, a
dependency of flame-python, or a ``uv`` on PATH. Without it, pip in a private virtual environment
(``python -m venv --system-site-packages``, so the tools of the executor manager's Python are
there) does the same. The target directory goes first on the service's PYTHONPATH; the service
still runs the executor manager's interpreter, so flamepy and flame stay importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from flame.executor_manager.shims import ShimError

INSTALL_TIMEOUT = 900.0
LOG_TAIL_LINES = 20
TOOLS = ("uv", "pip")


def find_uv() -> str | None:
    """The uv binary: the one the ``uv`` package ships, else one on PATH."""
    try:
        import uv

        found = uv.find_uv_bin()
        if found and os.access(found, os.X_OK):
            return str(found)
    except (ImportError, FileNotFoundError):
        pass
    return shutil.which("uv")


@dataclass(frozen=True)
class InstallResult:
    tool: str
    log: Path


async def install(source: Path, target: Path, log: Path, *, tool: str | None = None) -> InstallResult:
    """Install ``source`` (a project directory or a wheel) with its dependencies into ``target``.

    ``tool`` is ``uv``, ``pip`` or None (uv if available, else pip). The installer's output goes to
    ``log``; a failure raises ShimError with its last lines.
    """
    if tool is not None and tool not in TOOLS:
        raise ShimError(f"unknown installer tool {tool!r}: accepted are {', '.join(TOOLS)}")
    uv = find_uv() if tool in (None, "uv") else None
    if tool == "uv" and uv is None:
        raise ShimError("uv is not available to the executor manager (pip install uv)")
    target.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        if uv is not None:
            argv = [uv, "pip", "install", "--python", sys.executable, "--target", str(target), str(source)]
            await _run(argv, out, log, "uv")
            return InstallResult("uv", log)
        venv = target.parent / "pip-venv"
        if not (venv / "bin" / "python").exists():
            await _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], out, log, "venv")
        python = str(venv / "bin" / "python")
        argv = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--target", str(target)]
        await _run([*argv, str(source)], out, log, "pip")
        return InstallResult("pip", log)


async def _run(argv: list[str], out: object, log: Path, name: str) -> None:
    out.write(f"$ {' '.join(argv)}\n".encode())  # type: ignore[attr-defined]
    out.flush()  # type: ignore[attr-defined]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,  # type: ignore[arg-type]
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
    except OSError as exc:
        raise ShimError(f"cannot run {name} ({argv[0]}): {exc.strerror or exc}") from exc
    try:
        code = await asyncio.wait_for(process.wait(), INSTALL_TIMEOUT)
    except asyncio.TimeoutError:
        _kill(process)
        await process.wait()
        raise ShimError(f"{name} did not finish within {INSTALL_TIMEOUT:g}s; {tail(log)}") from None
    except BaseException:
        _kill(process)
        await process.wait()
        raise
    if code != 0:
        raise ShimError(f"{name} failed with exit code {code}; {tail(log)}")


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, 9)


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """``last lines of LOG:`` and its last lines (what a user needs to see why an install failed)."""
    try:
        text = log.read_bytes()[-64 * 1024 :].decode(errors="replace")
    except OSError:
        return f"see {log}"
    return f"last lines of {log}:\n" + "\n".join(text.splitlines()[-lines:])
