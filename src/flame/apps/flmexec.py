"""flmexec: the built-in service that runs a Python or shell script per task (Flame's contract).

A task's input is JSON::

    {"language": "python" | "shell", "runtime": null | "3.11" | "bash" ..., "code": "...",
     "input": null | [bytes as numbers] | "text", "timeout": null | seconds}

The script's stdin is ``input``; its stdout comes back as ``{"data": [bytes as numbers]}`` (Flame's
encoding of bytes, which flamepy's Sandbox reads). A script that exits with a non-zero code fails
its task with the code and the last lines of its stderr; one that runs past its timeout (the
task's ``timeout``, else $FLMEXEC_TIMEOUT, else 600 s) is killed with its process group and fails.

**flmexec runs arbitrary code as the executor's user**: anyone who can create a session on the
cluster can run any program on its nodes. Leave it out of ``cluster.builtin_applications`` where
that is not wanted.

Run it as ``python -m flame.apps.flmexec`` under an executor manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flame.service import FlameService, SessionContext, TaskContext, run
from flame.types import ApplicationSchema, ApplicationSpec

FLMEXEC_APPLICATION = "flmexec"
TIMEOUT_ENV = "FLMEXEC_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
STDERR_TAIL_LINES = 20
LANGUAGES = ("python", "shell")
SHELLS = ("sh", "bash", "zsh", "csh", "tcsh", "ksh", "fish", "dash")
_KEYS = ("language", "runtime", "code", "input", "timeout")
_PYTHON_VERSION = re.compile(r"^(?:python)?(3(?:\.\d+)?)$")
_INPUT_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "language": {"type": "string", "enum": list(LANGUAGES)},
            "runtime": {"type": ["string", "null"]},
            "code": {"type": "string"},
            "input": {"type": ["array", "string", "null"], "items": {"type": "integer"}},
            "timeout": {"type": ["number", "null"]},
        },
        "required": ["language", "code"],
    }
)

logger = logging.getLogger(__name__)


def flmexec_application_spec() -> ApplicationSpec:
    return ApplicationSpec(
        description="Built-in script runner: runs a Python or shell script per task (arbitrary code, as the "
        "executor's user)",
        command="${FLAME_PYTHON}",
        arguments=["-m", "flame.apps.flmexec"],
        schema=ApplicationSchema(input=_INPUT_SCHEMA, output=json.dumps({"type": "object"})),
    )


@dataclass(frozen=True)
class Script:
    language: str
    code: str
    runtime: str | None = None
    input: bytes | None = None
    timeout: float | None = None


def parse_script(data: bytes | None) -> Script:
    """The script a task asks for; ValueError says what was wrong and what is accepted."""
    try:
        request: Any = json.loads(data or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f'flmexec input must be JSON like {{"language": "python", "code": "print(1)"}}: {exc}'
        ) from None
    if not isinstance(request, dict):
        raise ValueError(f"flmexec input must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - set(_KEYS))
    if unknown:
        raise ValueError(f"flmexec input has unknown key(s) {', '.join(unknown)}; accepted: {', '.join(_KEYS)}")
    language = request.get("language")
    if not isinstance(language, str) or language.strip().lower() not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    code = request.get("code")
    if not isinstance(code, str):
        raise ValueError(f"code must be a string (the script's text), got {type(code).__name__}")
    runtime = request.get("runtime")
    if runtime is not None and not isinstance(runtime, str):
        raise ValueError(f"runtime must be a string or null, got {runtime!r}")
    timeout = request.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or null, got {timeout!r}")
    return Script(
        language=language.strip().lower(),
        code=code,
        runtime=runtime.strip() or None if runtime is not None else None,
        input=_stdin(request.get("input")),
        timeout=float(timeout) if timeout is not None else None,
    )


def _stdin(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise ValueError("input must be null, a string, or a list of byte values 0-255 (Flame's encoding of bytes)")


def interpreter(script: Script) -> list[str]:
    """The command that runs the script file (appended by the caller); ValueError if not available."""
    if script.language == "python":
        if script.runtime is None:
            return [sys.executable]
        match = _PYTHON_VERSION.match(script.runtime)
        if match is None:
            raise ValueError(f"python runtime must be a version such as 3.11 or python3.11, got {script.runtime!r}")
        found = shutil.which(f"python{match.group(1)}")
        if found is None:
            raise ValueError(
                f"python {match.group(1)} is not installed on this node (no python{match.group(1)} on PATH)"
            )
        return [found]
    shell = script.runtime or "bash"
    name = Path(shell).name
    if name not in SHELLS or ("/" in shell and str(Path(shell).parent) not in ("/bin", "/usr/bin")):
        raise ValueError(f"shell runtime must be one of {', '.join(SHELLS)} (or /bin/, /usr/bin/ one), got {shell!r}")
    found = shutil.which(shell)
    if found is None:
        raise ValueError(f"shell {shell!r} is not installed on this node")
    return [found]


def default_timeout(env: Mapping[str, str]) -> float:
    text = env.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"${TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


async def run_script(script: Script, *, cwd: Path, timeout: float) -> bytes:
    """Run the script in ``cwd``; its stdout, or RuntimeError/TimeoutError saying how it failed."""
    command = interpreter(script)
    with tempfile.TemporaryDirectory(prefix="flmexec-") as scratch:
        path = Path(scratch) / ("main.py" if script.language == "python" else "main.sh")
        path.write_text(script.code)
        process = await asyncio.create_subprocess_exec(
            *command,
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(script.input or b""), timeout)
        except asyncio.TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            raise TimeoutError(
                f"{script.language} script ran past its timeout of {timeout:g}s and was killed"
            ) from None
        except BaseException:
            _kill_group(process.pid)
            await process.wait()
            raise
        finally:
            _kill_group(process.pid)  # whatever it left running in its group
    if stderr:
        sys.stderr.write(stderr.decode(errors="replace"))
    if process.returncode != 0:
        raise RuntimeError(_failure(script.language, process.returncode or 0, stderr))
    return stdout


def _failure(language: str, returncode: int, stderr: bytes) -> str:
    if returncode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    tail = "\n".join(stderr.decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:])
    return f"{language} script {how}; stderr:\n{tail}" if tail else f"{language} script {how} (no stderr)"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class FlmexecService(FlameService):
    def __init__(self) -> None:
        self._timeout = default_timeout(os.environ)

    async def on_session_enter(self, context: SessionContext) -> None:
        pass

    async def on_task_invoke(self, context: TaskContext) -> bytes:
        script = parse_script(context.input)
        timeout = script.timeout or self._timeout
        logger.info("task %s: running a %s script (timeout %gs)", context.task_id, script.language, timeout)
        stdout = await run_script(script, cwd=Path.cwd(), timeout=timeout)
        return json.dumps({"data": list(stdout)}).encode()

    async def on_session_leave(self) -> None:
        pass


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(FlmexecService())


if __name__ == "__main__":
    main()
