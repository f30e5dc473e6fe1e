"""What the cache keeps for one object: a versioned base and the patches appended since.

The base is either opaque bytes (one ``binary`` value, the ``{version, data}`` rows flamepy sends
for pickled objects, numpy arrays and files) or a native Arrow table (flamepy sends pyarrow,
pandas and polars tables as they are, marked by the ``flame.cache.format`` schema metadata).
Patches are opaque bytes. Versions start at 1 and every put or patch adds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

FORMAT_KEY = b"flame.cache.format"
VERSION_KEY = b"flame.cache.version"
FORMAT_ARROW_TABLE = b"arrow-table-v1"

OPAQUE_SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])
# do_get answers for opaque objects: one row per base or patch, in version order.
RESPONSE_SCHEMA = pa.schema(
    [
        pa.field("version", pa.uint64(), nullable=False),
        pa.field("kind", pa.utf8(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ]
)
KIND_BASE = "base"
KIND_PATCH = "patch"


def is_native_table(schema: pa.Schema) -> bool:
    return bool(schema.metadata) and schema.metadata.get(FORMAT_KEY) == FORMAT_ARROW_TABLE


def with_version(schema: pa.Schema, version: int) -> pa.Schema:
    """A native table's schema carrying the object's version, as flamepy reads it."""
    metadata = dict(schema.metadata or {})
    metadata[FORMAT_KEY] = FORMAT_ARROW_TABLE
    metadata[VERSION_KEY] = str(version).encode()
    return schema.with_metadata(metadata)


def schema_version(schema: pa.Schema) -> int:
    value = (schema.metadata or {}).get(VERSION_KEY, b"0")
    try:
        return int(value)
    except ValueError:
        return 0


def blob(data: bytes | pa.Buffer) -> pa.BinaryArray:
    """One opaque value as a one-row binary array (zero-copy for a Buffer)."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    offsets = pa.array([0, buffer.size], type=pa.int32()).buffers()[1]
    array = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, buffer])
    assert isinstance(array, pa.BinaryArray)
    return array


@dataclass(frozen=True)
class Patch:
    version: int
    data: pa.BinaryArray  # one row

    @property
    def size(self) -> int:
        return int(self.data.nbytes)


@dataclass
class StoredObject:
    """``data`` (opaque, one row) or ``table`` (native Arrow, its schema carrying the version) is set."""

    version: int
    data: pa.BinaryArray | None = None
    table: pa.Table | None = None
    patches: list[Patch] = field(default_factory=list)

    @property
    def current_version(self) -> int:
        return self.patches[-1].version if self.patches else self.version

    @property
    def size(self) -> int:
        base = self.table.nbytes if self.table is not None else (self.data.nbytes if self.data is not None else 0)
        return int(base) + sum(patch.size for patch in self.patches)

    def patched(self, patch: Patch) -> StoredObject:
        """A copy with ``patch`` appended (the base is shared, not copied)."""
        return StoredObject(self.version, self.data, self.table, [*self.patches, patch])

    def response(self, since: int) -> tuple[pa.Schema, list[pa.RecordBatch]]:
        """What do_get sends to a client that holds version ``since`` (0: nothing).

        The current version: an empty stream. A native table: the whole table. Otherwise the
        patches after ``since`` when the client holds the base and every patch up to it, else the
        base and all patches.
        """
        current = self.current_version
        if since != 0 and since == current:
            return RESPONSE_SCHEMA, []
        if self.table is not None:
            return self.table.schema, self.table.to_batches()
        if 0 < since < current and self.version <= since:
            newer = [patch for patch in self.patches if patch.version > since]
            if [patch.version for patch in newer] == list(range(since + 1, current + 1)):
                return RESPONSE_SCHEMA, [_row(patch.version, KIND_PATCH, patch.data) for patch in newer]
        assert self.data is not None
        rows = [_row(self.version, KIND_BASE, self.data)]
        rows += [_row(patch.version, KIND_PATCH, patch.data) for patch in self.patches]
        return RESPONSE_SCHEMA, rows


def _row(version: int, kind: str, data: pa.BinaryArray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([version], type=pa.uint64()), pa.array([kind], type=pa.utf8()), data], schema=RESPONSE_SCHEMA
    )
