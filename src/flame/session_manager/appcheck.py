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
