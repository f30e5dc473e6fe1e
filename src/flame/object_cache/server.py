"""The Arrow Flight face of the object cache, wire-compatible with flamepy 0.6.0 and Flame.

do_put    path ``app/session`` (new object, generated id) or ``app/session/object``: store
          the stream as the object's new base; ``{version, data}`` rows are one opaque value,
          a schema marked ``flame.cache.format=arrow-table-v1`` a native table.
          Command ``PATCH:<key>``: append the one opaque value as a patch.
          Answers one PutResult whose app_metadata is the ObjectRef (BSON endpoint/key/version).
do_get    ticket ``<key>:<version>``: 0 gives the whole object, the current version an empty
          stream, an older one the patches since (or the whole object if it cannot).
get_flight_info / list_flights (criteria: an optional key prefix) / do_action DELETE <prefix>.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame.errors import FlameError, InvalidArgument
from flame.object_cache.auth import Caller, Ownership
from flame.object_cache.keys import ObjectKey, parse_ticket
from flame.object_cache.objects import OPAQUE_SCHEMA, RESPONSE_SCHEMA, blob, is_native_table
from flame.object_cache.store import ObjectInfo, ObjectStore
from flame.protocol import encode_object_ref
from flame.protocol.flight import flight_error

logger = logging.getLogger(__name__)

_PATCH = b"PATCH:"
_ACTIONS = [("DELETE", "Delete the object or every object under a key prefix (<app>/<session> or <app>/*)")]


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"invalid {what}: not UTF-8 text") from None


class _Complete:
    """A do_put reader that fails, rather than ends, when the client went away mid-stream.

    pyarrow ends the stream quietly when the call is cancelled (the client died or dropped the
    connection), so the end of a stream is checked against the call's state before it counts.
    """

    def __init__(self, reader: Any, context: Any) -> None:
        self._reader, self._context = reader, context
        self.schema = reader.schema

    def __iter__(self) -> Iterator[Any]:
        yield from self._reader
        if self._context.is_cancelled():
            raise InvalidArgument(
                "the upload was interrupted (the client went away before it finished); nothing was stored"
            )


def _caller(context: Any) -> Caller | None:
    """Who the guard admitted this call as (None: the cache checks no one)."""
    caller = context.get_middleware("auth")
    return caller if isinstance(caller, Caller) else None


def _fields(schema: pa.Schema) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


class CacheFlightServer(flight.FlightServerBase):
    """Serves ``store`` at ``location``; ``public`` is the endpoint written into ObjectRefs."""

    def __init__(
        self,
        location: str,
        store: ObjectStore,
        public: str,
        tls: list[Any] | None = None,
        *,
        guard: flight.ServerMiddlewareFactory | None = None,
        client_ca: bytes | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        super().__init__(
            location,
            tls_certificates=tls or [],
            verify_client=client_ca is not None,
            root_certificates=client_ca,
            middleware={"auth": guard} if guard is not None else None,
        )
        self.store = store
        self.public = public
        self.ownership = ownership

    def _check(self, context: Any, key: ObjectKey, method: str, *, writes: bool = False) -> None:
        """PermissionDenied unless the caller may reach ``key`` (its session is its own, for a user)."""
        if self.ownership is not None:
            self.ownership.check(_caller(context), key, f"object cache {method}", writes=writes)

    def _ref(self, info: ObjectInfo) -> bytes:
        return encode_object_ref(self.public, info.key, info.version)

    def _flight_info(self, info: ObjectInfo) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(info.key.encode(), [self.public])
        descriptor = flight.FlightDescriptor.for_path(info.key)
        schema = RESPONSE_SCHEMA
        if info.native_table:
            table = self.store.get(ObjectKey.parse_full(info.key)).table
            schema = table.schema if table is not None else schema
        return flight.FlightInfo(
            schema, descriptor, [endpoint], 1 + info.patches, info.size, app_metadata=self._ref(info)
        )

    # -- Flight calls; each turns a FlameError into a clean Flight error -------------------------

    def do_put(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        try:
            info = self._put(descriptor, _Complete(reader, context), context)
        except FlameError as exc:
            logger.info("do_put refused: %s", exc.message)
            raise flight_error(exc) from exc
        writer.write(pa.py_buffer(self._ref(info)))

    def _put(self, descriptor: flight.FlightDescriptor, reader: Any, context: Any) -> ObjectInfo:
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            command = bytes(descriptor.command)
            if not command.startswith(_PATCH):
                raise InvalidArgument(
                    f"unknown do_put command {command[:40]!r}: expected PATCH:<app>/<session>/<object>"
                )
            key = ObjectKey.parse_full(_text(command[len(_PATCH) :], "PATCH key"))
            self._check(context, key, "DoPut", writes=True)
            return self.store.patch(key, self._read_opaque(reader, f"patch of {key}"))
        if len(descriptor.path) != 1:
            raise InvalidArgument("invalid do_put descriptor: expected one path, '<app>/<session>[/<object>]'")
        key = ObjectKey.parse(_text(bytes(descriptor.path[0]), "descriptor path"))
        if key.is_all_sessions:
            raise InvalidArgument(f"invalid do_put key {str(key)!r}: '*' is only for delete")
        self._check(context, key, "DoPut", writes=True)
        if is_native_table(reader.schema):
            return self.store.put(key, table=self._read_table(reader, f"object under {key}"))
        return self.store.put(key, data=self._read_opaque(reader, f"object under {key}"))

    def _read_batches(self, reader: Any, what: str) -> list[pa.RecordBatch]:
        """Every batch of the stream, refusing it as soon as it passes max_object_size."""
        batches: list[pa.RecordBatch] = []
        size = 0
        try:
            for chunk in reader:
                if chunk.data is None:
                    continue
                size += chunk.data.nbytes
                self.store.check_size(size, what)
                batches.append(chunk.data)
        except pa.ArrowException as exc:
            raise InvalidArgument(f"{what}: the upload stream broke off or is not valid Arrow: {exc}") from None
        return batches

    def _read_table(self, reader: Any, what: str) -> pa.Table:
        return pa.Table.from_batches(self._read_batches(reader, what), reader.schema)

    def _read_opaque(self, reader: Any, what: str) -> pa.BinaryArray:
        schema: pa.Schema = reader.schema
        if "data" not in schema.names or not pa.types.is_binary(schema.field("data").type):
            raise InvalidArgument(
                f"{what}: the stream's schema is ({_fields(schema)}); expected ({_fields(OPAQUE_SCHEMA)}) "
                "or an Arrow table marked flame.cache.format=arrow-table-v1"
            )
        index = schema.get_field_index("data")
        values = [batch.column(index) for batch in self._read_batches(reader, what)]
        values = [v for v in values if len(v)]
        if not values:
            raise InvalidArgument(f"{what}: the stream has no data rows")
        if len(values) == 1 and len(values[0]) == 1 and values[0].null_count == 0:
            only = values[0]
            assert isinstance(only, pa.BinaryArray)
            return only
        parts = [buf for array in values for buf in array.to_pylist()]  # chunked upload: one value
        if any(part is None for part in parts):
            raise InvalidArgument(f"{what}: a data row is null")
        return blob(b"".join(parts))

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        try:
            key, since = parse_ticket(bytes(ticket.ticket))
            self._check(context, key, "DoGet")
            schema, batches = self.store.get(key).response(since)
        except FlameError as exc:
            raise flight_error(exc) from exc
        return flight.RecordBatchStream(pa.Table.from_batches(batches, schema))

    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        try:
            if descriptor.descriptor_type != flight.DescriptorType.PATH or len(descriptor.path) != 1:
                raise InvalidArgument("invalid descriptor: expected the path '<app>/<session>/<object>'")
            key = ObjectKey.parse_full(_text(bytes(descriptor.path[0]), "descriptor path"))
            self._check(context, key, "GetFlightInfo")
            info = self.store.info(key)
            if info is None:  # not indexed: it may be on disk (written there by a client)
                self.store.get(key)
                info = self.store.info(key)
            assert info is not None
            return self._flight_info(info)
        except FlameError as exc:
            raise flight_error(exc) from exc

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        try:
            prefix = ObjectKey.parse(_text(bytes(criteria), "criteria")) if criteria else None
            infos = list(self.store.list(prefix))
            if self.ownership is not None:
                keys = [info.key for info in infos]
                visible = set(self.ownership.visible(_caller(context), keys, "object cache ListFlights"))
                infos = [info for info in infos if info.key in visible]
        except FlameError as exc:
            raise flight_error(exc) from exc
        for info in infos:
            endpoint = flight.FlightEndpoint(info.key.encode(), [self.public])
            descriptor = flight.FlightDescriptor.for_path(info.key)
            yield flight.FlightInfo(
                RESPONSE_SCHEMA, descriptor, [endpoint], 1 + info.patches, info.size, app_metadata=self._ref(info)
            )

    def do_action(self, context: Any, action: flight.Action) -> Iterator[bytes]:
        try:
            if action.type != "DELETE":
                raise InvalidArgument(f"unknown action {action.type!r}: the cache supports DELETE")
            body = action.body.to_pybytes() if action.body is not None else b""
            prefix = ObjectKey.parse(_text(body, "DELETE body"))
            self._check(context, prefix, "DoAction DELETE", writes=True)
            self.store.delete(prefix)
        except FlameError as exc:
            raise flight_error(exc) from exc
        yield b"OK"

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return _ACTIONS
