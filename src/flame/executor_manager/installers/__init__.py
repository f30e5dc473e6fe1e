"""Application installers: what an executor manager does to an application's package before its service runs.

Only ``installer: python`` exists (Flame's name). :func:`prepare_application` is the one entry
point, called when an executor binds, before the service process is launched; an install that
fails raises ShimError, so the bind fails (session event 1001) with the installer's last lines.

``$FLAME_PYTHON_INSTALLER`` (``uv`` or ``pip``) forces a tool; by default uv is used when it is
available and pip (in a private venv) otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from flame.errors import FlameError
from flame.executor_manager._settings import AgentSettings
from flame.executor_manager.installers._manager import PackageEnvironments
from flame.executor_manager.installers._python import TOOLS, find_uv, install
from flame.executor_manager.shims import ShimError
from flame.types import ApplicationSpec

TOOL_ENV = "FLAME_PYTHON_INSTALLER"

# One set of environments per work directory (per executor manager), shared by its executors so
# that their installs of one package wait on one lock.
_by_work_dir: dict[Path, PackageEnvironments] = {}


def environments_for(work_dir: Path) -> PackageEnvironments:
    environments = _by_work_dir.get(work_dir)
    if environments is None:
        tool = os.environ.get(TOOL_ENV) or None
        if tool is not None and tool not in TOOLS:
            raise ShimError(f"${TOOL_ENV} is {tool!r}: accepted are {', '.join(TOOLS)} (or unset)")
        environments = _by_work_dir[work_dir] = PackageEnvironments(work_dir, tool=tool)
    return environments


async def prepare_application(
    settings: AgentSettings, application: str, spec: ApplicationSpec, executor_id: str
) -> ApplicationSpec:
    """The spec to launch ``application``'s service with, its package installed (ShimError if not)."""
    if not spec.installer:
        return spec
    try:
        return await environments_for(settings.work_dir).prepare(application, spec, executor_id)
    except ShimError:
        raise
    except Exception as exc:  # a full disk, a permission: the bind fails, the executor manager goes on
        reason = exc.message if isinstance(exc, FlameError) else f"{type(exc).__name__}: {exc}"
        raise ShimError(f"cannot prepare the package of application {application}: {reason}") from exc


__all__ = ["PackageEnvironments", "environments_for", "find_uv", "install", "prepare_application"]
