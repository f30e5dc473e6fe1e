"""Flame's rules for applications: what registration checks, and which shims the nodes offer.

Flame checks at registration that the schemas are JSON Schemas and that ``working_directory``
is absolute; everything else (no command, a shim no node offers) is found out later, when an
executor binds or when the scheduler looks for a node.
"""

from __future__ import annotations

import json

from flame.errors import InvalidArgument
from flame.types import Application, ApplicationSpec, Shim

# What an executor manager of ours runs; a node of Flame's may offer Wasm too.
NODE_SHIMS = (Shim.HOST,)


def check_application_schemas(name: str, spec: ApplicationSpec) -> None:
    """Each given schema must be JSON text holding a JSON Schema (an object or a boolean)."""
    if spec.schema is None:
        return
    for field, text in (
        ("input", spec.schema.input),
        ("output", spec.schema.output),
        ("common data", spec.schema.common_data),
    ):
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"application {name!r}: invalid {field} schema: not JSON ({exc})") from None
        if not isinstance(value, (dict, bool)):
            raise InvalidArgument(
                f"application {name!r}: invalid {field} schema: a JSON Schema is an object or a boolean, "
                f"got {type(value).__name__}"
            )


def unsupported_shim(app: Application | None) -> str | None:
    """Why no node of this cluster can run ``app``'s executors, or None if they can."""
    if app is None or app.spec.shim in NODE_SHIMS:
        return None
    offered = ", ".join(shim.name.capitalize() for shim in NODE_SHIMS)
    return (
        f"application {app.name!r} needs the {app.spec.shim.name.capitalize()} shim and the nodes of this "
        f"cluster offer only {offered}: its sessions stay open and their tasks pending until a node offers it"
    )


def check_application_spec(name: str, spec: ApplicationSpec) -> None:
    """What Flame checks at registration: schemas are JSON, working_directory is absolute.

    An application without a command, or with a shim no node offers, is accepted as Flame
    accepts it: binding it fails (event 1001), or its sessions wait with an event saying why.
    """
    check_application_schemas(name, spec)
    if spec.working_directory and not spec.working_directory.startswith("/"):
        raise InvalidArgument(
            f"application {name!r}: working_directory must be an absolute path, got {spec.working_directory!r}"
        )
    if spec.max_instances is not None and spec.max_instances < 1:
        raise InvalidArgument(f"application {name!r}: max_instances must be at least 1, got {spec.max_instances}")
    if spec.delay_release is not None and spec.delay_release < 0:
        raise InvalidArgument(f"application {name!r}: delay_release must be >= 0 seconds, got {spec.delay_release}")
    task_timeout_label(name, spec)
    for env in spec.environments:
        if not env or "=" in env:
            raise InvalidArgument(f"application {name!r}: invalid environment variable name {env!r}")


TASK_TIMEOUT_LABEL = "task_timeout="


def task_timeout_label(name: str, spec: ApplicationSpec) -> float | None:
    """The seconds of an application's ``task_timeout=<seconds>`` label, if it has one."""
    for label in spec.labels:
        if label.startswith(TASK_TIMEOUT_LABEL):
            text = label[len(TASK_TIMEOUT_LABEL) :]
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not 0 < value < 10**7:
                raise InvalidArgument(
                    f"application {name!r}: invalid label {label!r}: "
                    "expected task_timeout=<seconds>, e.g. task_timeout=30"
                )
            return value
    return None
