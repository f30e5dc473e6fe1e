"""ObjectRef: where a cached object lives and which version of it a holder has seen (flamepy's)."""

from __future__ import annotations

from dataclasses import dataclass

from flame.protocol import decode_object_ref, encode_object_ref


@dataclass(frozen=True)
class ObjectRef:
    """``endpoint`` is the cache (``grpc://host:port``), ``key`` is ``<app>/<session>/<object>``.

    ``version`` 0 asks for a fresh download; the cache numbers stored versions from 1.
    ``encode()`` gives the bytes flamepy puts in a session's common data; ``decode`` reads them.
    """

    endpoint: str
    key: str
    version: int = 0

    def encode(self) -> bytes:
        return encode_object_ref(self.endpoint, self.key, self.version)

    @classmethod
    def decode(cls, data: bytes) -> ObjectRef:
        return cls(*decode_object_ref(bytes(data)))
