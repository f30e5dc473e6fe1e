"""Bad input to the object cache over real Flight: clear errors, nothing half-stored, no crash."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flame.client import cache_client
from flame.config import cache_config_from_dict
from flame.errors import InvalidArgument
from flame.object_cache import ObjectCache
from flame.protocol import decode_object_ref

OPAQUE = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])


@pytest.fixture(scope="module")
def cache() -> Iterator[ObjectCache]:
    config = cache_config_from_dict({"cache": {"endpoint": "grpc://127.0.0.1:0", "max_object_size": "64k"}})
    with ObjectCache(config) as running:
        yield running


@pytest.fixture()
def client(cache: ObjectCache) -> flight.FlightClient:
    return flight.FlightClient(cache.endpoint)


def put(
    client: flight.FlightClient, descriptor: flight.FlightDescriptor, schema: pa.Schema, rows: list[bytes]
) -> bytes:
    writer, reader = client.do_put(descriptor, schema)
    try:
        for row in rows:
            writer.write_batch(
                pa.record_batch([pa.array([0], pa.uint64()), pa.array([row], pa.binary())], schema=schema)
            )
        writer.done_writing()
        return bytes(reader.read() or b"")
    finally:
        writer.close()


def listed(client: flight.FlightClient) -> list[str]:
    return [info.descriptor.path[0].decode() for info in client.list_flights()]


def test_an_object_over_the_size_limit_is_refused_naming_the_limit(client: flight.FlightClient) -> None:
    with pytest.raises(flight.FlightError, match=r"over the cache's limit of 65536 bytes \(cache.max_object_size\)"):
        put(client, flight.FlightDescriptor.for_path("big/s"), OPAQUE, [b"x" * 40_000, b"y" * 40_000])
    assert [k for k in listed(client) if k.startswith("big/")] == []


@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        (b"just-a-name", "invalid object key 'just-a-name'"),
        (b"a/b/c:soon", "version 'soon' is not a whole number >= 0"),
        (b"a/b:1", "expected '<app>/<session>/<object>'"),
        (b"\xff\xfe", "invalid ticket: not UTF-8 text"),
        (b"a/b/missing:0", "object a/b/missing not found"),
    ],
)
def test_malformed_tickets(client: flight.FlightClient, ticket: bytes, expected: str) -> None:
    with pytest.raises(flight.FlightError) as info:
        client.do_get(flight.Ticket(ticket)).read_all()
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("descriptor", "schema", "expected"),
    [
        (flight.FlightDescriptor.for_path("a/b/c/d"), OPAQUE, "invalid object key 'a/b/c/d'"),
        (flight.FlightDescriptor.for_path("a/*"), OPAQUE, "'*' is only for delete"),
        (flight.FlightDescriptor.for_command(b"DROP:a/b/c"), OPAQUE, "unknown do_put command"),
        (flight.FlightDescriptor.for_command(b"PATCH:a/b"), OPAQUE, "expected '<app>/<session>/<object>'"),
        (flight.FlightDescriptor.for_command(b"PATCH:a/b/none"), OPAQUE, "object a/b/none not found"),
        (
            flight.FlightDescriptor.for_path("a/b"),
            pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.utf8())]),
            "schema is (version: uint64, data: string); expected (version: uint64, data: binary) or an Arrow table",
        ),
    ],
)
def test_malformed_descriptors_and_patches(
    client: flight.FlightClient, descriptor: flight.FlightDescriptor, schema: pa.Schema, expected: str
) -> None:
    before = listed(client)
    with pytest.raises(flight.FlightError) as info:
        writer, reader = client.do_put(descriptor, schema)
        row = [pa.array([0], pa.uint64()), pa.array(["x"] if schema.field("data").type == pa.utf8() else [b"x"])]
        writer.write_batch(pa.record_batch(row, schema=schema))
        writer.done_writing()
        reader.read()
        writer.close()
    assert expected in str(info.value)
    assert listed(client) == before


def test_an_unknown_action_and_a_bad_delete_prefix(client: flight.FlightClient) -> None:
    with pytest.raises(flight.FlightError, match="unknown action 'PURGE': the cache supports DELETE"):
        list(client.do_action(flight.Action("PURGE", b"a/b")))
    with pytest.raises(flight.FlightError, match="invalid object key '\\*/b'"):
        list(client.do_action(flight.Action("DELETE", b"*/b")))


UPLOADER = """
    import os, sys
    import pyarrow as pa, pyarrow.flight as flight
    schema = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])
    client = flight.FlightClient(sys.argv[1])
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("half/s/file.bin"), schema)
    for _ in range(3):
        writer.write_batch(pa.record_batch([pa.array([0], pa.uint64()), pa.array([b"x" * 10_000])], schema=schema))
    print("sent", flush=True)
    os._exit(1)  # the client dies mid-upload, as on a crash or a lost connection
"""


def test_a_half_written_upload_leaves_nothing_behind(cache: ObjectCache, client: flight.FlightClient) -> None:
    script = textwrap.dedent(UPLOADER)
    done = subprocess.run([sys.executable, "-c", script, cache.endpoint], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "sent"
    assert [k for k in listed(client) if k.startswith("half/")] == []
    ref = put(client, flight.FlightDescriptor.for_path("half/s/file.bin"), OPAQUE, [b"whole"])  # still serving
    assert decode_object_ref(ref)[1:] == ("half/s/file.bin", 1)  # the first version: the half one never counted


def test_our_sdk_refuses_bad_keys_before_sending(cache: ObjectCache) -> None:
    sdk = cache_client(cache.endpoint)
    for prefix in ("app", "app/*", "app/s/o"):
        with pytest.raises(InvalidArgument, match=f"invalid object key '{re.escape(prefix)}'"):
            sdk.put_object(prefix, 1)
    with pytest.raises(
        InvalidArgument, match="expected '<app>/<session>' or '<app>/<session>/<object>' or '<app>/\\*'"
    ):
        sdk.delete_objects("a/*/o")
