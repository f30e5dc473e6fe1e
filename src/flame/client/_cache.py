"""The SDK's object cache client: flamepy's wire format and serialisation, so both SDKs share objects.

Values are stored as flamepy 0.6.0 stores them: a pyarrow Table or RecordBatch as a native Arrow
table; a contiguous numpy array as ``FLM\\x01`` + an Arrow tensor; anything else as ``FLM\\x00`` +
a pickle (cloudpickle when it is installed, as flamepy uses). A process-wide LRU keeps what was
fetched, keyed by (endpoint, key) with its version, so a repeated get transfers nothing when the
object is unchanged and only the new patches when it was patched.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame.client._object_ref import ObjectRef
from flame.errors import FlameError, InvalidArgument, NotFound
from flame.protocol import decode_object_ref
from flame.protocol.flight import error_from_flight


def _find_pickler() -> Any:
    """cloudpickle (it pickles lambdas and local classes, as flamepy does) if installed, else pickle."""
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        return pickle


_pickler = _find_pickler()

Deserializer = Callable[[Any, list[Any]], Any]

_PICKLED, _NUMPY, _TABLE, _ARRAY, _BATCH = (b"FLM\x00", b"FLM\x01", b"FLM\x02", b"FLM\x03", b"FLM\x04")
_FORMAT_KEY, _VERSION_KEY, _LOGICAL_KEY = b"flame.cache.format", b"flame.cache.version", b"flame.cache.logical_type"
_ARROW_TABLE = b"arrow-table-v1"
_OPAQUE_SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])
_CHUNK = 1024 * 1024
_LOCAL_CACHE_SIZE = 1000
_GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


# -- values <-> bytes, as flamepy writes them --------------------------------------------------


def encode_value(obj: Any) -> pa.Buffer:
    try:
        import numpy as np

        if isinstance(obj, np.ndarray) and (obj.flags.c_contiguous or obj.flags.f_contiguous):
            sink = pa.BufferOutputStream()
            sink.write(_NUMPY)
            pa.ipc.write_tensor(pa.Tensor.from_numpy(obj), sink)
            return sink.getvalue()
    except ImportError:
        pass
    if isinstance(obj, pa.Array):
        sink = pa.BufferOutputStream()
        sink.write(_ARRAY)
        batch = pa.record_batch([obj], names=["array"])
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue()
    out = io.BytesIO()
    out.write(_PICKLED)
    _pickler.dump(obj, out, protocol=5)
    return pa.py_buffer(out.getbuffer())


def decode_value(data: pa.Buffer | bytes) -> Any:
    view = memoryview(data)
    prefix, body = bytes(view[:4]), view[4:]
    if prefix == _PICKLED:
        return pickle.loads(body)
    if prefix == _NUMPY:
        return pa.ipc.read_tensor(pa.BufferReader(pa.py_buffer(body))).to_numpy()
    if prefix in (_TABLE, _BATCH, _ARRAY):
        table = pa.ipc.open_stream(pa.BufferReader(pa.py_buffer(body))).read_all()
        if prefix == _ARRAY:
            return table.column(0).combine_chunks()
        return table.to_batches()[0] if prefix == _BATCH and table.num_rows else table
    return pickle.loads(view)  # flamepy's oldest format: a bare pickle


def _native(obj: Any) -> pa.Table | None:
    """A table flamepy sends natively, with its cache metadata."""
    if isinstance(obj, pa.RecordBatch):
        obj, logical = pa.Table.from_batches([obj]), b"pyarrow.record_batch"
    elif isinstance(obj, pa.Table):
        logical = b"pyarrow.table"
    else:
        return None
    metadata = {**(obj.schema.metadata or {}), _FORMAT_KEY: _ARROW_TABLE, _VERSION_KEY: b"0", _LOGICAL_KEY: logical}
    return obj.replace_schema_metadata(metadata)


def _from_native(table: pa.Table) -> Any:
    metadata = dict(table.schema.metadata or {})
    logical = metadata.get(_LOGICAL_KEY, b"pyarrow.table")
    user = {k: v for k, v in metadata.items() if not k.startswith(b"flame.cache.")}
    table = table.replace_schema_metadata(user or None)
    if logical == b"pyarrow.record_batch" and table.num_rows:
        return table.combine_chunks().to_batches()[0]
    if logical == b"pandas.dataframe":
        try:
            return table.to_pandas()
        except ImportError:
            return table
    return table


# -- the process-wide client-side cache ---------------------------------------------------------


@dataclass
class _Entry:
    version: int
    base: Any
    patches: list[Any] = field(default_factory=list)


class _LocalCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> _Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: _Entry) -> None:
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, match: Callable[[tuple[str, str]], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                del self._items[key]


_local = _LocalCache(_LOCAL_CACHE_SIZE)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path!r}: {exc.strerror}") from None


class _Bearer(flight.ClientMiddlewareFactory):
    """Adds the bearer token to every call of one client."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._headers = {"authorization": f"Bearer {token}"}

    def start_call(self, info: Any) -> flight.ClientMiddleware:
        return _Headers(self._headers)


class _Headers(flight.ClientMiddleware):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self._headers = headers

    def sending_headers(self) -> dict[str, str]:
        return self._headers


class ObjectCacheClient:
    """Blocking and thread-safe; one per cache endpoint (a pyarrow FlightClient underneath)."""

    def __init__(
        self,
        endpoint: str,
        ca_file: str | None = None,
        *,
        token: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        """``token``: sent as ``authorization: Bearer`` on every call; ``cert_file``/``key_file``: a
        client certificate for a cache that checks them (both PEM)."""
        location = endpoint.replace("grpcs://", "grpc+tls://", 1)
        if not location.startswith(("grpc://", "grpc+tls://", "grpc+tcp://")):
            raise InvalidArgument(
                f"invalid cache endpoint {endpoint!r}: expected grpc://host:port or grpcs://host:port"
            )
        self.endpoint = endpoint
        kwargs: dict[str, Any] = {"generic_options": _GRPC_OPTIONS}
        if location.startswith("grpc+tls"):
            if ca_file:
                kwargs["tls_root_certs"] = _read(ca_file, "the cache's CA file")
            if cert_file and key_file:
                kwargs["cert_chain"] = _read(cert_file, "the client certificate")
                kwargs["private_key"] = _read(key_file, "the client certificate's key")
        if token:
            kwargs["middleware"] = [_Bearer(token)]
        self._client = flight.FlightClient(location, **kwargs)

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except pa.ArrowException as exc:
            raise error_from_flight(exc, what) from exc

    def _put(self, what: str, descriptor: flight.FlightDescriptor, schema: pa.Schema, batches: list[Any]) -> ObjectRef:
        def run() -> ObjectRef:
            writer, reader = self._client.do_put(descriptor, schema)
            try:
                for batch in batches:
                    writer.write_batch(batch)
                writer.done_writing()
                metadata = reader.read()
            finally:
                writer.close()
            if metadata is None:
                raise NotFound(f"{what}: the cache answered without an ObjectRef")
            return ObjectRef(*decode_object_ref(metadata.to_pybytes()))

        ref: ObjectRef = self._call(what, run)
        return ref

    def _put_value(self, what: str, descriptor: flight.FlightDescriptor, obj: Any) -> ObjectRef:
        table = _native(obj)
        if table is not None:
            return self._put(what, descriptor, table.schema, table.to_batches() or [_empty_batch(table)])
        return self._put(what, descriptor, _OPAQUE_SCHEMA, [_opaque_batch(encode_value(obj))])

    def put_object(self, key_prefix: str, obj: Any) -> ObjectRef:
        """Store ``obj`` as a new object under ``<app>/<session>``; returns its ref (version 1)."""
        _check_key(key_prefix, parts=(2,))
        return self._put_value(f"put object under {key_prefix}", flight.FlightDescriptor.for_path(key_prefix), obj)

    def update_object(self, ref: ObjectRef, obj: Any) -> ObjectRef:
        """Replace the object (its patches too); returns the ref with the new version."""
        _check_key(ref.key, parts=(3,))
        new = self._put_value(f"update object {ref.key}", flight.FlightDescriptor.for_path(ref.key), obj)
        _local.drop(lambda k: k == (ref.endpoint, ref.key))
        return new

    def patch_object(self, ref: ObjectRef, delta: Any) -> ObjectRef:
        """Append ``delta`` to the object; ``get_object(..., deserializer)`` sees base and patches."""
        _check_key(ref.key, parts=(3,))
        descriptor = flight.FlightDescriptor.for_command(f"PATCH:{ref.key}".encode())
        return self._put(f"patch object {ref.key}", descriptor, _OPAQUE_SCHEMA, [_opaque_batch(encode_value(delta))])

    def get_object(self, ref: ObjectRef, deserializer: Deserializer | None = None) -> Any:
        """The object (``deserializer(base, patches)`` if given), fetching only what changed."""
        _check_key(ref.key, parts=(3,))
        cache_key = (ref.endpoint, ref.key)
        cached = _local.get(cache_key) if ref.version != 0 else None
        entry = self._fetch(ref.key, cached)
        _local.put(cache_key, entry)
        return entry.base if deserializer is None else deserializer(entry.base, list(entry.patches))

    def _fetch(self, key: str, cached: _Entry | None) -> _Entry:
        since = cached.version if cached is not None else 0
        ticket = flight.Ticket(f"{key}:{since}".encode())
        table: pa.Table = self._call(f"get object {key}", lambda: self._client.do_get(ticket).read_all())
        if (table.schema.metadata or {}).get(_FORMAT_KEY) == _ARROW_TABLE:
            version = int((table.schema.metadata or {}).get(_VERSION_KEY, b"0"))
            return _Entry(version, _from_native(table))
        if table.num_rows == 0:
            if cached is None:
                raise NotFound(f"object {key} not found")
            return cached
        versions = table.column("version").to_pylist()
        kinds = table.column("kind").to_pylist() if "kind" in table.column_names else ["base"] * table.num_rows
        values = [decode_value(chunk) for chunk in _values(table.column("data"))]
        rows = list(zip(versions, kinds, values, strict=True))
        if kinds[0] == "base":
            return _Entry(max(versions), rows[0][2], [value for _, kind, value in rows[1:] if kind == "patch"])
        if cached is None:
            raise NotFound(f"object {key}: the cache sent patches for a version this client does not hold")
        return _Entry(max(versions), cached.base, [*cached.patches, *values])

    def delete_objects(self, key_prefix: str) -> None:
        """Delete ``<app>/<session>/<object>``, every object of ``<app>/<session>``, or of ``<app>/*``."""
        _check_key(key_prefix, parts=(2, 3), wildcard=True)
        action = flight.Action("DELETE", key_prefix.encode())
        self._call(f"delete objects {key_prefix}", lambda: list(self._client.do_action(action)))
        app, session, *rest = key_prefix.split("/")

        def matches(k: tuple[str, str]) -> bool:
            if rest:
                return k[1] == key_prefix
            return k[1].startswith(f"{app}/") if session == "*" else k[1].startswith(f"{key_prefix}/")

        _local.drop(matches)

    def upload_object(self, key_or_prefix: str, path: str | os.PathLike[str]) -> ObjectRef:
        """Store a file's bytes (streamed in 1 MB chunks); the key may name the object or be a prefix."""
        _check_key(key_or_prefix, parts=(2, 3))
        source = Path(path)
        if not source.is_file():
            raise NotFound(f"file {str(source)!r} not found")

        def chunks() -> list[pa.RecordBatch]:
            out = []
            with source.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    out.append(_opaque_batch(pa.py_buffer(chunk)))
            return out or [_opaque_batch(pa.py_buffer(b""))]

        descriptor = flight.FlightDescriptor.for_path(key_or_prefix)
        return self._put(f"upload {source} to {key_or_prefix}", descriptor, _OPAQUE_SCHEMA, chunks())

    def download_object(self, ref: ObjectRef, path: str | os.PathLike[str]) -> None:
        """Write an uploaded object's bytes to ``path`` (written aside and renamed: never half a file)."""
        _check_key(ref.key, parts=(3,))
        target = Path(path)
        ticket = flight.Ticket(f"{ref.key}:0".encode())
        table: pa.Table = self._call(f"download {ref.key}", lambda: self._client.do_get(ticket).read_all())
        if "kind" in table.column_names and set(table.column("kind").to_pylist()) - {"base"}:
            raise InvalidArgument(f"object {ref.key} has patches: download_object is for uploaded files")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        try:
            with tmp.open("wb") as out:
                for chunk in _values(table.column("data")):
                    out.write(chunk)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def list_objects(self, prefix: str | None = None) -> list[ObjectRef]:
        """Refs (with current versions) of every object, or of those under ``prefix``."""
        if prefix is not None:
            _check_key(prefix, parts=(2,), wildcard=True)
        criteria = prefix.encode() if prefix else b""
        infos = self._call("list objects", lambda: list(self._client.list_flights(criteria)))
        return [ObjectRef(*decode_object_ref(info.app_metadata)) for info in infos]


def _values(column: pa.ChunkedArray) -> list[memoryview]:
    """Each binary value as a view of the received buffer (no copy)."""
    out = []
    for chunk in column.chunks:
        offsets = memoryview(chunk.buffers()[1]).cast("i")
        data = memoryview(chunk.buffers()[2]) if chunk.buffers()[2] is not None else memoryview(b"")
        base = chunk.offset
        out += [data[offsets[base + i] : offsets[base + i + 1]] for i in range(len(chunk))]
    return out


def _opaque_batch(data: pa.Buffer) -> pa.RecordBatch:
    offsets = pa.array([0, data.size], type=pa.int32()).buffers()[1]
    values = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, data])
    return pa.RecordBatch.from_arrays([pa.array([0], type=pa.uint64()), values], schema=_OPAQUE_SCHEMA)


def _empty_batch(table: pa.Table) -> pa.RecordBatch:
    arrays = [pa.array([], type=f.type) for f in table.schema]
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema)


def _check_key(text: str, parts: tuple[int, ...], *, wildcard: bool = False) -> None:
    """Refuse a key the cache would refuse, before any bytes are sent."""
    shapes = {2: "'<app>/<session>'", 3: "'<app>/<session>/<object>'"}
    pieces = text.split("/") if isinstance(text, str) else []
    bad = not pieces or len(pieces) not in parts or any(not p or ".." in p or "\\" in p for p in pieces)
    stars = [i for i, p in enumerate(pieces) if p == "*"]
    if bad or stars not in ([], [1] if wildcard and len(pieces) == 2 else []):
        accepted = " or ".join(shapes[n] for n in parts) + (" or '<app>/*'" if wildcard else "")
        raise InvalidArgument(f"invalid object key {text!r}: expected {accepted}")


__all__ = ["Deserializer", "FlameError", "ObjectCacheClient", "decode_value", "encode_value"]
