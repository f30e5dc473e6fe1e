"""ObjectRef on the wire: the BSON document ``{endpoint: str, key: str, version: int}``.

It travels in a cache put's PutResult app_metadata and as a session's common data, as flamepy
0.6.0 encodes it. Only those three fields are needed, so this is a small codec, not a BSON library.
"""

from __future__ import annotations

import struct

from flame import errors

_STRING = 0x02
_INT32 = 0x10
_INT64 = 0x12


def encode_object_ref(endpoint: str, key: str, version: int) -> bytes:
    """BSON ``{endpoint, key, version}``; the version as int64, as Flame's cache writes it."""
    body = b"".join(
        [
            _string_element("endpoint", endpoint),
            _string_element("key", key),
            bytes([_INT64]) + b"version\x00" + struct.pack("<q", version),
        ]
    )
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _string_element(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    return bytes([_STRING]) + name.encode() + b"\x00" + struct.pack("<i", len(data) + 1) + data + b"\x00"


def decode_object_ref(data: bytes) -> tuple[str, str, int]:
    """(endpoint, key, version) from the BSON flamepy or Flame wrote; InvalidArgument if it is not one."""
    fields: dict[str, object] = {}
    try:
        (length,) = struct.unpack_from("<i", data, 0)
        if length != len(data) or data[-1] != 0:
            raise ValueError("length mismatch")
        pos = 4
        while pos < length - 1:
            kind = data[pos]
            end = data.index(b"\x00", pos + 1)
            name = data[pos + 1 : end].decode("utf-8")
            pos = end + 1
            if kind == _STRING:
                (size,) = struct.unpack_from("<i", data, pos)
                fields[name] = data[pos + 4 : pos + 3 + size].decode("utf-8")
                pos += 4 + size
            elif kind == _INT32:
                fields[name] = struct.unpack_from("<i", data, pos)[0]
                pos += 4
            elif kind == _INT64:
                fields[name] = struct.unpack_from("<q", data, pos)[0]
                pos += 8
            else:
                raise ValueError(f"field {name!r} has BSON type {kind:#x}")
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"not an encoded ObjectRef (BSON endpoint, key, version): {exc}") from None
    endpoint, key, version = fields.get("endpoint"), fields.get("key"), fields.get("version")
    if not isinstance(endpoint, str) or not isinstance(key, str) or not isinstance(version, int):
        raise errors.InvalidArgument(
            f"not an encoded ObjectRef: fields {sorted(fields)}, expected endpoint, key, version"
        )
    return endpoint, key, version
