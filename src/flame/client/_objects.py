"""The object cache methods of Connection and AsyncConnection (``conn.put_object`` and friends).

The cache is found as flamepy finds it: $FLAME_CACHE_ENDPOINT, else the current context's
``cache.endpoint`` in the client config, else grpc://127.0.0.1:9090. pyarrow's Flight client
blocks, so the async methods run it on a worker thread; both share one client per endpoint.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flame.client._object_ref import ObjectRef
from flame.config import load_client_config

if TYPE_CHECKING:
    from flame.client._cache import Deserializer, ObjectCacheClient

DEFAULT_CACHE_ENDPOINT = "grpc://127.0.0.1:9090"  # flamepy's default

_clients: dict[tuple[str, str | None], ObjectCacheClient] = {}
_clients_lock = threading.Lock()


def cache_client(
    endpoint: str | None = None, ca_file: str | None = None, config: str | Path | None = None
) -> ObjectCacheClient:
    """The process's client for ``endpoint`` (default: as flamepy resolves it), created on first use."""
    from flame.client._cache import ObjectCacheClient

    if endpoint is None:
        client_config = load_client_config(config)
        endpoint = client_config.cache_endpoint or DEFAULT_CACHE_ENDPOINT
        ca_file = ca_file or client_config.cache_ca_file or client_config.ca_file
    with _clients_lock:
        key = (endpoint, ca_file)
        if key not in _clients:
            _clients[key] = ObjectCacheClient(endpoint, ca_file)
        return _clients[key]


def common_object(data: bytes | None, deserializer: Deserializer | None = None) -> Any:
    """The object a session's common data (an encoded ObjectRef) points to, from its own cache."""
    from flame.errors import InvalidArgument

    if data is None:
        raise InvalidArgument("the session has no common data (expected an encoded ObjectRef)")
    ref = ObjectRef.decode(data)
    return cache_client(ref.endpoint, os.environ.get("FLAME_CA_FILE")).get_object(ref, deserializer)


class ObjectMethods:
    """Mixed into the blocking Connection, which holds its AsyncConnection as ``_async``."""

    @property
    def cache(self) -> ObjectCacheClient:
        owner: AsyncObjectMethods = vars(self)["_async"]
        return owner.cache

    def put_object(self, key_prefix: str, obj: Any) -> ObjectRef:
        """Store ``obj`` under ``<app>/<session>`` (the cache names it); returns its ObjectRef."""
        return self.cache.put_object(key_prefix, obj)

    def get_object(self, ref: ObjectRef, deserializer: Deserializer | None = None) -> Any:
        """The object; fetches only what changed since this process last saw it."""
        return self.cache.get_object(ref, deserializer)

    def update_object(self, ref: ObjectRef, obj: Any) -> ObjectRef:
        return self.cache.update_object(ref, obj)

    def patch_object(self, ref: ObjectRef, delta: Any) -> ObjectRef:
        return self.cache.patch_object(ref, delta)

    def delete_objects(self, key_prefix: str) -> None:
        self.cache.delete_objects(key_prefix)

    def upload_object(self, key_or_prefix: str, path: str | os.PathLike[str]) -> ObjectRef:
        return self.cache.upload_object(key_or_prefix, path)

    def download_object(self, ref: ObjectRef, path: str | os.PathLike[str]) -> None:
        self.cache.download_object(ref, path)

    def list_objects(self, prefix: str | None = None) -> list[ObjectRef]:
        return self.cache.list_objects(prefix)


class AsyncObjectMethods:
    """Mixed into AsyncConnection: the same calls as coroutines."""

    _cache_config_path: str | Path | None = None
    _cache: ObjectCacheClient | None = None

    @property
    def cache(self) -> ObjectCacheClient:
        if self._cache is None:
            self._cache = cache_client(config=self._cache_config_path)
        return self._cache

    async def put_object(self, key_prefix: str, obj: Any) -> ObjectRef:
        return await asyncio.to_thread(self.cache.put_object, key_prefix, obj)

    async def get_object(self, ref: ObjectRef, deserializer: Deserializer | None = None) -> Any:
        return await asyncio.to_thread(self.cache.get_object, ref, deserializer)

    async def update_object(self, ref: ObjectRef, obj: Any) -> ObjectRef:
        return await asyncio.to_thread(self.cache.update_object, ref, obj)

    async def patch_object(self, ref: ObjectRef, delta: Any) -> ObjectRef:
        return await asyncio.to_thread(self.cache.patch_object, ref, delta)

    async def delete_objects(self, key_prefix: str) -> None:
        await asyncio.to_thread(self.cache.delete_objects, key_prefix)

    async def upload_object(self, key_or_prefix: str, path: str | os.PathLike[str]) -> ObjectRef:
        return await asyncio.to_thread(self.cache.upload_object, key_or_prefix, path)

    async def download_object(self, ref: ObjectRef, path: str | os.PathLike[str]) -> None:
        await asyncio.to_thread(self.cache.download_object, ref, path)

    async def list_objects(self, prefix: str | None = None) -> list[ObjectRef]:
        return await asyncio.to_thread(self.cache.list_objects, prefix)


# flamepy's module-level functions, on the process's default cache client.


def put_object(key_prefix: str, obj: Any) -> ObjectRef:
    """Store ``obj`` under ``<app>/<session>`` in the default cache (as ``flamepy.put_object``)."""
    return cache_client().put_object(key_prefix, obj)


def get_object(ref: ObjectRef, deserializer: Deserializer | None = None) -> Any:
    """The object ``ref`` names, from the cache at ``ref.endpoint`` (as ``flamepy.get_object``)."""
    return cache_client(ref.endpoint, os.environ.get("FLAME_CA_FILE")).get_object(ref, deserializer)


def update_object(ref: ObjectRef, obj: Any) -> ObjectRef:
    return cache_client(ref.endpoint, os.environ.get("FLAME_CA_FILE")).update_object(ref, obj)


def patch_object(ref: ObjectRef, delta: Any) -> ObjectRef:
    return cache_client(ref.endpoint, os.environ.get("FLAME_CA_FILE")).patch_object(ref, delta)


def delete_objects(key_prefix: str) -> None:
    cache_client().delete_objects(key_prefix)
