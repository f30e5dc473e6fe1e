"""A warm interpreter: Python with grpc and this SDK already imported, waiting to become a service.

An executor manager keeps one of these per free executor slot (see
``flame.executor_manager.shims._warm``). Starting a service cold costs its interpreter start and the
import of grpc and the SDK, ~0.2-0.3 s of CPU before the first task; a warm interpreter has paid that
ahead of time, so a session's service is ready in a few milliseconds.

Started as ``python -c 'from flame.service._warm import main; main()' <executor manager pid>``, it
says ``ready`` on stdout once its imports are done, reads one launch as a JSON line on stdin and
then turns into that service as ``python -m module args`` or ``python script args`` would have
started it: same argv, environment, working directory, ``sys.path[0]`` and output file. End of
input before a launch means it is not needed: it exits 0.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import json
import os
import runpy
import sys
import types
from typing import Any

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_NOT_OUR_PARENT = 70  # the executor manager died before this process could tie itself to it
READY = b"ready\n"  # the executor manager's pool (shims._warm.READY) waits for this line


def main() -> None:
    # Die with the executor manager's thread that started us, even if it is SIGKILLed, as every
    # service does; checked after the call, so a manager that died in between is noticed too.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != int(sys.argv[1]):
        os._exit(_NOT_OUR_PARENT)
    import grpc.aio  # noqa: F401  (the point of the process: paid for before it is needed)

    import flame.service  # noqa: F401

    os.write(1, READY)  # stdout is a pipe to the executor manager until the launch replaces it
    line = _read_line(0)
    if not line:
        sys.exit(0)
    become(json.loads(line))


def _read_line(fd: int) -> bytes:
    """One line from ``fd``, read unbuffered so nothing behind it is taken from the service."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def become(launch: dict[str, Any]) -> None:
    """Set up the process as the launch says, then run its main module or script as ``__main__``."""
    log = os.open(launch["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    os.chdir(launch["cwd"])
    os.environ.clear()
    os.environ.update(launch["env"])
    kind, target = launch["main"]
    # The command line stays this bootstrap's; the process name (top, ps -o comm, pgrep) says
    # which service it became: a module's last part, or a script's name without its suffix.
    name = target.rpartition(".")[2] if kind == "module" else os.path.splitext(os.path.basename(target))[0]
    ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15])
    sys.argv = [target, *launch["args"]]
    if kind == "module":
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        try:
            found = importlib.util.find_spec(target) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:  # what `python -m` says of a module it cannot find, with its exit code
            print(f"{sys.executable}: No module named {target}", file=sys.stderr)
            sys.exit(1)
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        run_script(target)


def run_script(target: str) -> None:
    """Run the file ``target`` as ``python target`` does: as module ``__main__`` (for good: pickles
    of its classes name it), ``__file__`` absolute, ``sys.argv[0]`` as given, ``sys.path[0]`` its
    directory with links resolved."""
    path = os.path.abspath(target)
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)
