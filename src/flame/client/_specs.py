"""Validation of what users pass in: application specs (or flamepy-style dicts), session specs, inputs."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from flame.client._object_ref import ObjectRef
from flame.errors import InvalidArgument
from flame.types import ApplicationSchema, ApplicationSpec, ResourceRequirement, SessionSpec, Shim

ACCEPTED_KEYS = tuple(f.name for f in fields(ApplicationSpec))
_OPTIONAL_TEXT = ("description", "image", "command", "working_directory", "url", "installer")
_TEXT_LISTS = ("labels", "arguments")
_SCHEMA_KEYS = tuple(f.name for f in fields(ApplicationSchema))


def application_spec(value: ApplicationSpec | Mapping[str, Any]) -> ApplicationSpec:
    """``value`` as an ApplicationSpec; a dict takes the keys of ``ACCEPTED_KEYS``, None meaning unset."""
    if isinstance(value, ApplicationSpec):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"application spec must be an ApplicationSpec or a dict, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in ACCEPTED_KEYS)
    if unknown:
        raise InvalidArgument(
            f"unknown application key(s) {', '.join(unknown)}; accepted keys are {', '.join(ACCEPTED_KEYS)}"
        )
    given = {k: v for k, v in value.items() if v is not None}
    spec = ApplicationSpec()
    if "shim" in given:
        spec.shim = _shim(given["shim"])
    for key in _OPTIONAL_TEXT:
        if key in given:
            setattr(spec, key, _text(key, given[key]))
    for key in _TEXT_LISTS:
        if key in given:
            setattr(spec, key, _text_list(key, given[key]))
    if "environments" in given:
        spec.environments = _environments(given["environments"])
    for key in ("max_instances", "delay_release"):
        if key in given:
            setattr(spec, key, _count(key, given[key]))
    if "schema" in given:
        spec.schema = _schema(given["schema"])
    return spec


def _shim(value: Any) -> Shim:
    if isinstance(value, Shim):
        return value
    if isinstance(value, str) and value.strip().upper() in Shim.__members__:
        return Shim[value.strip().upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in Shim._value2member_map_:
        return Shim(value)
    accepted = ", ".join(s.name.lower() for s in Shim)
    raise InvalidArgument(f"invalid shim {value!r}: accepted values are {accepted}")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"application {key} must be a string, got {type(value).__name__}")
    return value


def _text_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"application {key} must be a list of strings, got {value!r}")
    return list(value)


def _environments(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"application environments must be a dict of string to string, got {value!r}")
    return dict(value)


_UINT32_MAX = 2**32 - 1


def _count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise InvalidArgument(f"{key} must be a whole number from 0 to {_UINT32_MAX}, got {value!r}")
    return value


def _schema(value: Any) -> ApplicationSchema:
    if isinstance(value, ApplicationSchema):
        return value
    if not isinstance(value, Mapping) and all(hasattr(value, k) for k in _SCHEMA_KEYS):
        value = {k: getattr(value, k) for k in _SCHEMA_KEYS}  # e.g. flamepy's ApplicationSchema
    if not isinstance(value, Mapping) or any(k not in _SCHEMA_KEYS for k in value):
        raise InvalidArgument(
            f"application schema must be an ApplicationSchema or a dict with keys {', '.join(_SCHEMA_KEYS)}, "
            f"got {value!r}"
        )
    return ApplicationSchema(**{k: _text(f"schema.{k}", v) for k, v in value.items() if v is not None})


def as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    hint = " (encode text first, e.g. text.encode())" if isinstance(value, str) else ""
    raise InvalidArgument(f"{what} must be bytes, got {type(value).__name__}{hint}")


def new_session_id(application: str) -> str:
    """``<application>-<6 random letters/digits>``, as flamepy names sessions."""
    alphabet = string.ascii_letters + string.digits
    return f"{application}-{''.join(secrets.choice(alphabet) for _ in range(6))}"


def session_spec(
    application: str,
    common_data: bytes | ObjectRef | None,
    *,
    min_instances: int,
    max_instances: int | None,
    priority: int,
    resreq: ResourceRequirement | str | None,
    batch_size: int,
) -> SessionSpec:
    if not isinstance(application, str) or not application:
        raise InvalidArgument(f"application must be a non-empty string, got {application!r}")
    if isinstance(common_data, ObjectRef):  # flamepy's convention: the encoded ref is the common data
        common_data = common_data.encode()
    data = None if common_data is None else as_bytes(common_data, "common_data")
    for name, value in (("min_instances", min_instances), ("priority", priority), ("batch_size", batch_size)):
        _count(name, value)
    if max_instances is not None:
        _count("max_instances", max_instances)
        if max_instances < min_instances:
            raise InvalidArgument(f"max_instances ({max_instances}) must not be below min_instances ({min_instances})")
    if isinstance(resreq, str):
        resreq = ResourceRequirement.parse(resreq)
    elif resreq is not None and not isinstance(resreq, ResourceRequirement):
        raise InvalidArgument(
            f"resreq must be a ResourceRequirement or a string like 'cpu=1,mem=1g', got {type(resreq).__name__}"
        )
    return SessionSpec(
        application=application,
        common_data=data,
        min_instances=min_instances,
        max_instances=max_instances,
        batch_size=batch_size,
        priority=priority,
        resreq=resreq,
    )
