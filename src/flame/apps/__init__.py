"""Services that ship with Flame (run them with ``python -m flame.apps.<name>``).

The cluster registers them at start-up, those named by ``cluster.builtin_applications``:

- ``flmping``: sleeps and reports where it ran (checks a cluster end to end);
- ``flmexec``: runs a Python or shell script per task (arbitrary code, as the executor's user);
- ``flmrun``: flamepy's Runner service (``flamepy.runner.runpy``) over a package the executor
  manager installs (``installer: python``); flamepy's ``Runner`` clones it per package;
- ``flmfunc``: the service behind :class:`flame.Executor` (cloudpickled calls).
"""

from __future__ import annotations

from collections.abc import Iterable

from flame.types import ApplicationSpec

FLMRUN_APPLICATION = "flmrun"
FLMFUNC_APPLICATION = "flmfunc"
FLMPING_APPLICATION = "flmping"
FLMPING_MAX_DURATION_MS = 3_600_000  # the longest sleep a flmping task accepts


def flmrun_application_spec() -> ApplicationSpec:
    """flamepy's runner service; the executor manager installs the package named by ``url`` first."""
    return ApplicationSpec(
        description="Built-in Runner: runs flamepy.runner.runpy over the package of a Runner application",
        command="${FLAME_PYTHON}",
        arguments=["-m", "flamepy.runner.runpy"],
        installer="python",
    )


def flmfunc_application_spec() -> ApplicationSpec:
    return ApplicationSpec(
        description="Built-in function service of flame.Executor: calls cloudpickled functions and objects",
        command="${FLAME_PYTHON}",
        arguments=["-m", "flame.apps.flmfunc"],
    )


def builtin_applications(names: Iterable[str]) -> dict[str, ApplicationSpec]:
    """The specs of the named built-in applications (names as ``cluster.builtin_applications`` accepts)."""
    from flame.apps.flmexec import FLMEXEC_APPLICATION, flmexec_application_spec
    from flame.apps.flmping import flmping_application_spec

    specs = {
        FLMEXEC_APPLICATION: flmexec_application_spec,
        FLMFUNC_APPLICATION: flmfunc_application_spec,
        FLMPING_APPLICATION: flmping_application_spec,
        FLMRUN_APPLICATION: flmrun_application_spec,
    }
    return {name: specs[name]() for name in names}


__all__ = ["builtin_applications", "flmfunc_application_spec", "flmrun_application_spec"]
