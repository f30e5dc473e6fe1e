"""Where objects are kept: ``none`` (memory only) or ``fs://DIR`` (Arrow IPC files), as Flame's.

The file layout is Flame's, so a directory written by either server can be read by the other::

    DIR/<app>/<session>/<object>.arrow                  the base (a native table, or {version, data})
    DIR/<app>/<session>/<object>.deltas/<version>.arrow  one file per patch

Every file is written to a hidden temporary name and renamed into place, so a crash, a failed
upload or a full disk leaves either the previous file or the new one, never half of one;
leftover temporary files are removed at start-up. A put writes the new base first and then
removes the old patches; patches with a version not above their base's are ignored on reading.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from flame.errors import Internal, InvalidArgument, Unavailable
from flame.object_cache.keys import ObjectKey
from flame.object_cache.objects import (
    OPAQUE_SCHEMA,
    Patch,
    StoredObject,
    blob,
    is_native_table,
    schema_version,
    with_version,
)

logger = logging.getLogger(__name__)

STORAGE_ACCEPTED = "none, fs:///absolute/dir or fs://dir/relative/to/the/config/file"
_TMP_PREFIX = ".tmp-"


class StorageEngine(Protocol):
    """Durable copies of objects; the object store keeps what is in memory."""

    url: str

    def write(self, key: ObjectKey, obj: StoredObject) -> None: ...
    def append_patch(self, key: ObjectKey, patch: Patch) -> None: ...
    def read(self, key: ObjectKey) -> StoredObject | None: ...
    def delete(self, prefix: ObjectKey) -> None: ...
    def load(self) -> Iterator[tuple[ObjectKey, StoredObject]]: ...

    @property
    def durable(self) -> bool: ...


class NoneStorage:
    """Memory only: objects live as long as the server process (and eviction) lets them."""

    url = "none"
    durable = False

    def write(self, key: ObjectKey, obj: StoredObject) -> None:
        pass

    def append_patch(self, key: ObjectKey, patch: Patch) -> None:
        pass

    def read(self, key: ObjectKey) -> StoredObject | None:
        return None

    def delete(self, prefix: ObjectKey) -> None:
        pass

    def load(self) -> Iterator[tuple[ObjectKey, StoredObject]]:
        return iter(())


class FsStorage:
    """Arrow IPC files under ``root``; reads are memory-mapped, so loading costs no copy."""

    durable = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"fs://{root}"
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"cache storage {self.url}: cannot create the directory: {exc}") from exc

    def _base(self, key: ObjectKey) -> Path:
        return self.root / key.app / key.session / f"{key.object_id}.arrow"

    def _deltas(self, key: ObjectKey) -> Path:
        return self.root / key.app / key.session / f"{key.object_id}.deltas"

    def write(self, key: ObjectKey, obj: StoredObject) -> None:
        base = self._base(key)
        if obj.table is not None:
            schema = with_version(obj.table.schema, obj.version)
            self._write_file(base, schema, obj.table.replace_schema_metadata(schema.metadata).to_batches())
        else:
            assert obj.data is not None
            self._write_file(base, OPAQUE_SCHEMA, [_opaque_batch(obj.version, obj.data)])
        shutil.rmtree(self._deltas(key), ignore_errors=True)

    def append_patch(self, key: ObjectKey, patch: Patch) -> None:
        path = self._deltas(key) / f"{patch.version}.arrow"
        self._write_file(path, OPAQUE_SCHEMA, [_opaque_batch(patch.version, patch.data)])

    def _write_file(self, path: Path, schema: pa.Schema, batches: list[pa.RecordBatch]) -> None:
        tmp = path.parent / f"{_TMP_PREFIX}{path.name}.{uuid.uuid4().hex}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
            os.replace(tmp, path)
        except (OSError, pa.ArrowException) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            if full or "No space left" in str(exc) or "Disk quota" in str(exc):
                raise Unavailable(f"cache storage {self.url} is full: {path.name} was not stored") from exc
            raise Internal(f"cache storage {self.url}: cannot write {path}: {exc}; nothing was stored") from exc

    def read(self, key: ObjectKey) -> StoredObject | None:
        base = self._base(key)
        if not base.is_file():
            return None
        return self._read(base, self._deltas(key))

    def _read(self, base: Path, deltas: Path) -> StoredObject:
        try:
            table = _read_table(base)
            if is_native_table(table.schema):
                obj = StoredObject(max(schema_version(table.schema), 1), table=table)
            else:
                version, data = _opaque(table)
                obj = StoredObject(max(version, 1), data=data)
            for index, path in enumerate(sorted(_patch_files(deltas), key=lambda p: int(p.stem))):
                version, data = _opaque(_read_table(path))
                version = version or obj.version + index + 1  # Flame's oldest files carry version 0
                if version > obj.current_version:
                    obj.patches.append(Patch(version, data))
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise Internal(f"cache storage {self.url}: cannot read {base}: {exc}") from exc
        return obj

    def delete(self, prefix: ObjectKey) -> None:
        if prefix.object_id is not None:
            self._base(prefix).unlink(missing_ok=True)
            shutil.rmtree(self._deltas(prefix), ignore_errors=True)
        elif prefix.is_all_sessions:
            shutil.rmtree(self.root / prefix.app, ignore_errors=True)
        else:
            shutil.rmtree(self.root / prefix.app / prefix.session, ignore_errors=True)

    def load(self) -> Iterator[tuple[ObjectKey, StoredObject]]:
        """Every object on disk (removing leftover temporary files); unreadable files are skipped."""
        for session_dir in sorted(self.root.glob("*/*")):
            if not session_dir.is_dir():
                continue
            for path in sorted(session_dir.iterdir()):
                if path.name.startswith(_TMP_PREFIX) or (path.is_dir() and path.name.endswith(".deltas")):
                    self._remove_leftovers(path)
                    continue
                if path.suffix != ".arrow" or not path.is_file():
                    continue
                try:
                    key = ObjectKey.parse_full(f"{session_dir.parent.name}/{session_dir.name}/{path.stem}")
                    yield key, self._read(path, self._deltas(key))
                except (InvalidArgument, Internal) as exc:
                    logger.warning("skipping %s: %s", path, exc)

    def _remove_leftovers(self, path: Path) -> None:
        if path.is_dir():
            for tmp in path.glob(f"{_TMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
        else:
            logger.info("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)


def open_storage(url: str, base_dir: Path | None = None) -> StorageEngine:
    """``none`` or ``fs://DIR`` (``file://`` too; a relative DIR is taken from ``base_dir``)."""
    if url == "none":
        return NoneStorage()
    scheme, sep, rest = url.partition("://")
    if scheme not in ("fs", "file") or not sep or not rest:
        raise InvalidArgument(f"invalid cache storage {url!r}: expected {STORAGE_ACCEPTED}")
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return FsStorage(Path(os.path.normpath(path)))


def _opaque_batch(version: int, data: pa.BinaryArray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([version], type=pa.uint64()), data], schema=OPAQUE_SCHEMA)


def _read_table(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _opaque(table: pa.Table) -> tuple[int, pa.BinaryArray]:
    """The version and bytes of a ``{version, data}`` file (several rows are one value, concatenated)."""
    if table.num_rows == 0:
        raise ValueError("the file holds no rows")
    version = int(table.column("version")[0].as_py() or 0)
    column = table.column("data")
    if table.num_rows == 1:
        chunk = next(c for c in column.chunks if len(c))
        assert isinstance(chunk, pa.BinaryArray)
        return version, chunk
    return version, blob(b"".join(value.as_py() or b"" for value in column))


def _patch_files(deltas: Path) -> list[Path]:
    if not deltas.is_dir():
        return []
    return [p for p in deltas.iterdir() if p.suffix == ".arrow" and p.stem.isdigit()]
