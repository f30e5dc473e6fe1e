"""Reading YAML config files and validating their values with precise messages.

Every error names where the value came from (the file, ``<dict>`` or ``environment``), the key path
(``cluster.schedule_interval``), the bad value and what is accepted.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flame.errors import InvalidArgument
from flame.types import parse_memory

logger = logging.getLogger(__name__)

ENVIRONMENT = "environment"


def invalid(source: str, key: str, value: object, expected: str) -> InvalidArgument:
    """The error for one bad value: ``<source>: invalid <key> <value>: expected <what is accepted>``."""
    return InvalidArgument(f"{source}: invalid {key} {value!r}: expected {expected}")


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where Flame keeps its data by default: ``$XDG_DATA_HOME/flame`` or ``~/.local/share/flame``.

    A relative ``XDG_DATA_HOME`` is ignored, as the XDG base directory specification asks.
    """
    env = os.environ if env is None else env
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "flame"
    return home_dir(env) / ".local" / "share" / "flame"


def home_dir(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    return Path(home) if home else Path.home()


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` keys may be overridden
            continue
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; an empty file is an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidArgument(f"config file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read config file {str(path)!r}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InvalidArgument(f"{path}: invalid YAML{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: invalid top level {type(data).__name__}: expected a mapping of sections")
    return data


def resolve_dir(value: str | Path, base_dir: Path | None) -> Path:
    """Expand ``~``; a relative path is taken relative to ``base_dir`` (the config file's folder)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return Path(os.path.normpath(path))


@dataclass(frozen=True)
class Section:
    """One mapping of a config file, with typed getters that fail with the full key path.

    ``None`` (an empty YAML value) counts as absent everywhere, so the default applies.
    """

    data: Mapping[Any, Any]
    source: str
    path: str = ""

    @classmethod
    def root(cls, data: object, source: str) -> Section:
        if data is None:
            return cls({}, source)
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{source}: invalid config {data!r}: expected a mapping of sections")
        return cls(data, source)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, value: object, expected: str) -> InvalidArgument:
        return invalid(self.source, self.key(name), value, expected)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def check_keys(self, known: Iterable[str], ignored: Iterable[str] = ()) -> None:
        """Refuse keys that are neither ``known`` nor ``ignored`` (Flame's sections we do not use)."""
        known = sorted(known)
        ignored = set(ignored)
        for name in self.data:
            if name in known:
                continue
            if name in ignored:
                logger.debug("%s: ignoring %s (not used by Flame for Python)", self.source, self.key(name))
                continue
            where = f"in {self.path}" if self.path else "at the top level"
            hint = difflib.get_close_matches(str(name), known, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            also = f" (accepted and ignored: {', '.join(sorted(ignored))})" if ignored else ""
            raise InvalidArgument(
                f"{self.source}: unknown key {self.key(str(name))!r}{did_you_mean}; "
                f"known keys {where}: {', '.join(known)}{also}"
            )

    def section(self, name: str) -> Section:
        return self.nested(name, self.data.get(name))

    def nested(self, name: str, value: object) -> Section:
        """The mapping ``value`` found at ``name`` (which may be indexed, e.g. ``contexts[0]``)."""
        if value is None:
            return Section({}, self.source, self.key(name))
        if not isinstance(value, Mapping):
            raise self.error(name, value, "a mapping of keys")
        return Section(value, self.source, self.key(name))

    def string(self, name: str, default: str) -> str:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, value, "a non-empty string")
        return value.strip()

    def optional_flag(self, name: str) -> bool | None:
        """``true`` or ``false``; None when not given."""
        value = self.data.get(name)
        if value is not None and not isinstance(value, bool):
            raise self.error(name, value, "true or false")
        return value

    def optional_string(self, name: str) -> str | None:
        return self.string(name, "") or None

    def integer(self, name: str, default: int, minimum: int, unit: str = "") -> int:
        value = self.optional_integer(name, minimum, unit)
        return default if value is None else value

    def optional_integer(self, name: str, minimum: int, unit: str = "") -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(name, value, f"a whole number{unit} >= {minimum}")
        return value

    def size(self, name: str, default: int) -> int:
        """A size in bytes: a whole number or a string with a unit such as 512k, 16m, 1g."""
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.error(name, value, "a size in bytes, e.g. 1048576 or 16m")
        try:
            size = parse_memory(value)
        except InvalidArgument:
            raise self.error(name, value, "a size in bytes, e.g. 1048576 or 16m (units k, m, g, t)") from None
        if size < 1:
            raise self.error(name, value, "a size of at least 1 byte")
        return size

    def number(self, name: str, default: float, minimum: float, *, inclusive: bool, unit: str) -> float:
        """A float or int; ``inclusive`` says whether ``minimum`` itself is accepted."""
        value = self.data.get(name)
        if value is None:
            return default
        relation = ">=" if inclusive else ">"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value  # NaN
            or value == float("inf")
            or (value < minimum if inclusive else value <= minimum)
        ):
            raise self.error(name, value, f"a number of {unit} {relation} {minimum:g}")
        return float(value)

    def string_list(self, name: str, default: tuple[str, ...], accepted: Iterable[str]) -> tuple[str, ...]:
        """A list of names from ``accepted``, each at most once."""
        value = self.data.get(name)
        if value is None:
            return default
        accepted = tuple(accepted)
        choices = ", ".join(accepted)
        if not isinstance(value, list):
            raise self.error(name, value, f"a list of names from: {choices}")
        for index, item in enumerate(value):
            if item not in accepted:
                raise self.error(f"{name}[{index}]", item, f"one of: {choices}")
            if value.index(item) != index:
                raise self.error(f"{name}[{index}]", item, "each name at most once")
        return tuple(value)
