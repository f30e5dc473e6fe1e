"""Application manifests: the YAML files ``flmctl register -f`` and ``update -f`` read.

A file holds one or more YAML documents (separated by ``---``), each in Flame's format::

    metadata:
      name: my-app
    spec:
      command: /usr/bin/python3
      arguments: [-m, my_service]
      environments: {LOG_LEVEL: debug}      # or a list of {name: ..., value: ...}
      working_directory: /opt/my-app
      max_instances: 10
      delay_release: 60                     # seconds

The whole file is validated before anything is registered; every error names the file, the
document (counted from 1) and the key, says what was wrong and what is accepted.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flame.errors import InvalidArgument
from flame.types import ApplicationSchema, ApplicationSpec, Shim

_TOP_KEYS = ("metadata", "spec")
_METADATA_KEYS = ("name",)
_TEXT_KEYS = ("description", "image", "command", "working_directory", "url", "installer")
_LIST_KEYS = ("labels", "arguments")
_COUNT_KEYS = ("max_instances", "delay_release")
_SPEC_KEYS = ("shim", *_TEXT_KEYS, *_LIST_KEYS, "environments", *_COUNT_KEYS, "schema")
_SCHEMA_KEYS = ("input", "output", "common_data")
_UINT32_MAX = 2**32 - 1
# The session manager's rule for application names, checked here so no document is half-registered.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NAME_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_EXAMPLE = "metadata: {name: my-app} and spec: {command: ..., ...}"


@dataclass(frozen=True)
class ApplicationManifest:
    name: str
    spec: ApplicationSpec
    document: int  # its position in the file, from 1


class _Document:
    """One document's location, for error messages."""

    def __init__(self, source: str, index: int) -> None:
        self.where = f"{source}: document {index}"

    def error(self, key: str, problem: str) -> InvalidArgument:
        return InvalidArgument(f"{self.where}: {key}: {problem}")

    def check_keys(self, value: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
        for key in value:
            if key in known:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            name = f"{path}.{key}" if path else str(key)
            raise self.error(name, f"unknown key{did_you_mean}; accepted keys: {', '.join(known)}")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_manifests(path: str) -> list[ApplicationManifest]:
    """Read and validate every application of the YAML file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file; give the YAML file of the application(s)") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{path}: is a directory; give the YAML file of the application(s)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read it: {exc}") from None
    return parse_manifests(text, path)


def parse_manifests(text: str, source: str) -> list[ApplicationManifest]:
    """Validate every document of ``text`` (``source`` names it in messages) before returning any."""
    manifests: list[ApplicationManifest] = []
    first_document: dict[str, int] = {}
    for index, data in enumerate(_documents(text, source), start=1):
        if data is None:
            continue  # an empty document, e.g. after a trailing ---
        manifest = _manifest(data, _Document(source, index), index)
        if manifest.name in first_document:
            raise InvalidArgument(
                f"{source}: document {index}: metadata.name: application {manifest.name!r} is defined "
                f"already in document {first_document[manifest.name]}; each name at most once per file"
            )
        first_document[manifest.name] = index
        manifests.append(manifest)
    if not manifests:
        raise InvalidArgument(f"{source}: no application in the file; expected YAML documents with {_EXAMPLE}")
    return manifests


def _documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidArgument(f"{source}: invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{source}: invalid YAML: {exc}") from None


def _manifest(data: object, doc: _Document, index: int) -> ApplicationManifest:
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{doc.where}: expected a mapping with {_EXAMPLE}, got {_kind(data)}")
    doc.check_keys(data, _TOP_KEYS, "")
    metadata = _section(data, "metadata", doc, required=True)
    doc.check_keys(metadata, _METADATA_KEYS, "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise doc.error("metadata.name", f"expected {_NAME_RULE}, got {name!r}")
    spec = _section(data, "spec", doc, required=False)
    doc.check_keys(spec, _SPEC_KEYS, "spec")
    return ApplicationManifest(name, _spec(spec, doc), index)


def _section(data: Mapping[Any, Any], key: str, doc: _Document, *, required: bool) -> Mapping[Any, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        got = "nothing" if value is None else _kind(value)
        raise doc.error(key, f"expected a mapping of keys, got {got}")
    return value


def _spec(spec: Mapping[Any, Any], doc: _Document) -> ApplicationSpec:
    result = ApplicationSpec()
    given = {key: value for key, value in spec.items() if value is not None}
    readers: dict[str, Callable[[Any, str], Any]] = {
        "shim": _shim,
        "environments": _environments,
        "schema": _schema,
        **dict.fromkeys(_TEXT_KEYS, _text),
        **dict.fromkeys(_LIST_KEYS, _text_list),
        **dict.fromkeys(_COUNT_KEYS, _count),
    }
    for key, value in given.items():
        try:
            setattr(result, key, readers[key](value, f"spec.{key}"))
        except _Bad as bad:
            raise doc.error(bad.key, bad.problem) from None
    return result


class _Bad(Exception):
    """A bad value at ``key`` (raised by the readers, turned into InvalidArgument with the location)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return f"{name} ({value!r})" if kind in (str, bool, int) else name
    return f"{type(value).__name__} {value!r}"


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _Bad(key, f"expected a string, got {_kind(value)}")
    return value


def _scalar_text(value: Any, key: str) -> str:
    """A string; a number is taken as its text (``- 8080``), a boolean must be quoted."""
    if isinstance(value, bool):
        raise _Bad(key, f'expected a string, got a boolean ({value!r}); quote it, e.g. "{str(value).lower()}"')
    if isinstance(value, (int, float)):
        return str(value)
    return _text(value, key)


def _text_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        raise _Bad(key, f"expected a list of strings, got a string ({value!r}); write it as [{value!r}]")
    if not isinstance(value, list):
        raise _Bad(key, f"expected a list of strings, got {_kind(value)}")
    return [_scalar_text(item, f"{key}[{index}]") for index, item in enumerate(value)]


def _environments(value: Any, key: str) -> dict[str, str]:
    """``{NAME: value}`` or Flame's older ``[{name: NAME, value: value}, ...]``."""
    if isinstance(value, Mapping):
        return {_text(name, f"{key} name"): _scalar_text(item, f"{key}.{name}") for name, item in value.items()}
    if not isinstance(value, list):
        raise _Bad(key, f"expected a mapping of NAME: value (or a list of name/value pairs), got {_kind(value)}")
    result: dict[str, str] = {}
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"name", "value"}:
            raise _Bad(where, f"expected a mapping with exactly the keys name and value, got {item!r}")
        name = _text(item["name"], f"{where}.name")
        if name in result:
            raise _Bad(f"{where}.name", f"{name!r} is given twice")
        result[name] = _scalar_text(item["value"], f"{where}.value")
    return result


def _count(value: Any, key: str) -> int:
    unit = " of seconds" if key.endswith("delay_release") else ""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise _Bad(key, f"expected a whole number{unit} from 0 to {_UINT32_MAX}, got {_kind(value)}")
    return value


def _shim(value: Any, key: str) -> Shim:
    accepted = ", ".join(shim.name.lower() for shim in Shim)
    if not isinstance(value, str) or value.strip().upper() not in Shim.__members__:
        raise _Bad(key, f"expected one of: {accepted}; got {_kind(value)}")
    return Shim[value.strip().upper()]


def _schema(value: Any, key: str) -> ApplicationSchema:
    """Each of input, output and common_data: a JSON schema as a string, or as YAML (stored as JSON)."""
    if not isinstance(value, Mapping):
        raise _Bad(key, f"expected a mapping with keys {', '.join(_SCHEMA_KEYS)}, got {_kind(value)}")
    schema = ApplicationSchema()
    for name, item in value.items():
        where = f"{key}.{name}"
        if name not in _SCHEMA_KEYS:
            raise _Bad(where, f"unknown key; accepted keys: {', '.join(_SCHEMA_KEYS)}")
        if item is None:
            continue
        if isinstance(item, (Mapping, list)):
            item = json.dumps(item)
        setattr(schema, name, _text(item, where))
    return schema
