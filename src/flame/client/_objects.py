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
from flame.config import ClientConfig, load_client_config

if TYPE_CHECKING:
    from flame.client._cache import Deserializer, ObjectCacheClient

DEFAULT_CACHE_ENDPOINT = "grpc://127.0.0.1:9090"  # flamepy's default

_clients: dict[tuple[str, str | None, str | None, str | None], ObjectCacheClient] = {}
_clients_lock = threading.Lock()


def cache_client(
    endpoint: str | None = None,
    ca_file: str | None = None,
    config: str | Path | None = None,
    *,
    token: str | None = None,
) -> ObjectCacheClient:
    """The process's client for ``endpoint`` (default: as flamepy resolves it), created on first use.

    Credentials for a cluster with ``cluster.auth``: ``token``, else $FLAME_CACHE_TOKEN (what an
    executor manager gives its services), else the client config's token ($FLAME_TOKEN,
    $FLAME_TOKEN_FILE, the context's); a client certificate from $FLAME_CACHE_CERT_FILE and
    $FLAME_CACHE_KEY_FILE, else as the client config names it.
    """
    from flame.client._cache import ObjectCacheClient

    client_config = _client_config(config)
    if endpoint is None:
        endpoint = client_config.cache_endpoint or DEFAULT_CACHE_ENDPOINT
        ca_file = ca_file or client_config.cache_ca_file or client_config.ca_file
    token = token or os.environ.get("FLAME_CACHE_TOKEN") or client_config.token
    cert_file, key_file = client_config.cert_file, client_config.key_file
    if os.environ.get("FLAME_CACHE_CERT_FILE") and os.environ.get("FLAME_CACHE_KEY_FILE"):
        cert_file, key_file = os.environ["FLAME_CACHE_CERT_FILE"], os.environ["FLAME_CACHE_KEY_FILE"]
    with _clients_lock:
        key = (endpoint, ca_file, token, cert_file)
        if key not in _clients:
            _clients[key] = ObjectCacheClient(endpoint, ca_file, token=token, cert_file=cert_file, key_file=key_file)
        return _clients[key]


_configs: dict[tuple[str | Path | None, tuple[tuple[str, str], ...]], ClientConfig] = {}


def _client_config(config: str | Path | None) -> ClientConfig:
    """The client config, read once per process for the same file and environment: every get of
    an object asks for the cache client, and a YAML file read per object is not free."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("FLAME_") or k == "HOME"))
    key = (config, env)
    with _clients_lock:
        found = _configs.get(key)
    if found is None:
        found = load_client_config(config)
        with _clients_lock:
            if len(_configs) >= 64:  # environments that keep changing (tests): keep the newest only
                _configs.clear()
            _configs[key] = found
    return found


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

    def cache_at(self, endpoint: str | None) -> ObjectCacheClient:
        """The client for the cache at ``endpoint`` (None: this connection's), with this connection's token."""
        owner: AsyncObjectMethods = vars(self)["_async"]
        return owner.cache_at(endpoint)

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
    _cache_token: str | None = None  # the connection's own token, which the cache accepts too
    _cache: ObjectCacheClient | None = None

    @property
    def cache(self) -> ObjectCacheClient:
        if self._cache is None:
            self._cache = cache_client(config=self._cache_config_path, token=self._cache_token)
        return self._cache

    def cache_at(self, endpoint: str | None) -> ObjectCacheClient:
        if endpoint is None:
            return self.cache
        return cache_client(endpoint, config=self._cache_config_path, token=self._cache_token)

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
