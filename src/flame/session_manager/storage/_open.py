"""Choose and configure a storage engine from Flame's storage url."""

from __future__ import annotations

from pathlib import Path

from flame.errors import InvalidArgument
from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._memory import MemoryStorage
from flame.session_manager.storage._postgres import PostgresStorage, is_postgres_url, redact
from flame.session_manager.storage._sqlite import SqliteStorage

_SQLITE = "sqlite://"
ACCEPTED_FORMS = (
    "sqlite:///absolute/path/flame.db, "
    "sqlite://relative/path.db (relative to the data directory, or the working directory), "
    "postgres://user:password@host:port/database (or postgresql://), "
    "memory, or none (no persistence)"
)


def open_storage(url: str, data_dir: Path | None = None) -> Storage:
    """Return an engine (not yet started) for ``url``; raise InvalidArgument naming what is accepted."""
    text = url.strip()
    if text.lower() in ("memory", "none"):
        return MemoryStorage(url)
    if text[: len(_SQLITE)].lower() == _SQLITE:
        return SqliteStorage(url, _sqlite_path(url, text[len(_SQLITE) :], data_dir))
    if is_postgres_url(text):
        return PostgresStorage(text)
    raise InvalidArgument(f"unsupported storage url {redact(url)!r}: accepted forms are {ACCEPTED_FORMS}")


def _sqlite_path(url: str, rest: str, data_dir: Path | None) -> Path:
    if "?" in rest or "#" in rest:
        raise InvalidArgument(
            f"invalid storage url {url!r}: query parameters are not supported; accepted forms are {ACCEPTED_FORMS}"
        )
    if not rest or rest.endswith("/"):
        raise InvalidArgument(
            f"invalid storage url {url!r}: it names no database file; accepted forms are {ACCEPTED_FORMS}"
        )
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = (data_dir if data_dir is not None else Path.cwd()) / path
    return path.absolute()
