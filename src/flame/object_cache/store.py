"""The object store: versions, patches, listing and deletion over a storage engine, with eviction.

Thread-safe: Flight calls arrive on many threads. Writes to one key are serialised (a striped
lock), the storage write happens before memory changes (a failed write changes nothing), and a
reader takes a snapshot: a stored object is never changed in place, a patch makes a new one.
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import dataclass

import pyarrow as pa

from flame.errors import InvalidArgument, InvalidState, NotFound
from flame.object_cache.eviction import EvictionConfig, LruPolicy
from flame.object_cache.keys import ObjectKey
from flame.object_cache.objects import Patch, StoredObject, with_version
from flame.object_cache.storage import StorageEngine

logger = logging.getLogger(__name__)

_STRIPES = 64


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    version: int
    size: int
    patches: int
    native_table: bool


def _info(key: str, obj: StoredObject) -> ObjectInfo:
    return ObjectInfo(key, obj.current_version, obj.size, len(obj.patches), obj.table is not None)


class ObjectStore:
    def __init__(self, storage: StorageEngine, eviction: EvictionConfig, max_object_size: int) -> None:
        self.storage = storage
        self.max_object_size = max_object_size
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._index: dict[str, ObjectInfo] = {}
        self._resident: dict[str, StoredObject] = {}
        self._lru = LruPolicy(eviction)

    def load(self) -> int:
        """Index what storage holds (after a restart); returns the number of objects."""
        count = 0
        for key, obj in self.storage.load():
            with self._lock:
                self._remember(str(key), obj)
            count += 1
        return count

    def _stripe(self, key: str) -> threading.Lock:
        return self._stripes[zlib.crc32(key.encode()) % _STRIPES]

    def check_size(self, size: int, what: str) -> None:
        if size > self.max_object_size:
            raise InvalidArgument(
                f"{what} is {size} bytes, over the cache's limit of {self.max_object_size} bytes "
                "(cache.max_object_size)"
            )

    def put(self, key: ObjectKey, *, data: pa.BinaryArray | None = None, table: pa.Table | None = None) -> ObjectInfo:
        """A new object or a new base for an existing one (its patches are dropped); version + 1."""
        if key.object_id is None:
            key = key.with_generated_id()
        name = str(key)
        with self._stripe(name):
            known = self._index.get(name)
            previous = known.version if known else self._stored_version(key)
            version = previous + 1
            if table is not None:
                table = table.replace_schema_metadata(with_version(table.schema, version).metadata)
            obj = StoredObject(version, data=data, table=table)
            self.check_size(obj.size, f"object {name}")
            self.storage.write(key, obj)
            with self._lock:
                info = self._remember(name, obj)
        logger.debug("put %s version %d (%d bytes)", name, version, obj.size)
        return info

    def _stored_version(self, key: ObjectKey) -> int:
        if not self.storage.durable:
            return 0
        stored = self.storage.read(key)  # e.g. written by a client into a shared storage dir
        return stored.current_version if stored else 0

    def patch(self, key: ObjectKey, data: pa.BinaryArray) -> ObjectInfo:
        name = str(key)
        with self._stripe(name):
            current = self._get_unlocked(key, f"object {name} not found: put it before patching it")
            if current.table is not None:
                raise InvalidState(
                    f"object {name} is an Arrow table: patches apply to pickled objects; "
                    "replace a table with update_object"
                )
            patch = Patch(current.current_version + 1, data)
            patched = current.patched(patch)
            self.check_size(patched.size, f"object {name} with its patches")
            self.storage.append_patch(key, patch)
            with self._lock:
                return self._remember(name, patched)

    def get(self, key: ObjectKey) -> StoredObject:
        name = str(key)
        with self._lock:
            obj = self._resident.get(name)
            if obj is not None:
                self._lru.touch(name)
                return obj
        with self._stripe(name):
            return self._get_unlocked(key, f"object {name} not found")

    def _get_unlocked(self, key: ObjectKey, missing: str) -> StoredObject:
        name = str(key)
        with self._lock:
            obj = self._resident.get(name)
        if obj is None and self.storage.durable:
            obj = self.storage.read(key)
            if obj is not None:
                with self._lock:
                    self._remember(name, obj)
        if obj is None:
            raise NotFound(missing)
        return obj

    def info(self, key: ObjectKey) -> ObjectInfo | None:
        with self._lock:
            return self._index.get(str(key))

    def list(self, prefix: ObjectKey | None = None) -> list[ObjectInfo]:
        with self._lock:
            infos = list(self._index.values())
        return sorted((i for i in infos if prefix is None or prefix.matches(i.key)), key=lambda i: i.key)

    def delete(self, prefix: ObjectKey) -> int:
        """Delete the object or every object under the prefix; returns how many there were."""
        with self._lock:
            names = [name for name in self._index if prefix.matches(name)]
        stripes = [self._stripes[i] for i in sorted({zlib.crc32(n.encode()) % _STRIPES for n in names})]
        for stripe in stripes:  # always in index order: two deletes never wait on each other
            stripe.acquire()
        try:
            self.storage.delete(prefix)
            with self._lock:
                for name in names:
                    self._forget(name)
        finally:
            for stripe in stripes:
                stripe.release()
        if names:
            logger.info("deleted %d object(s) under %s", len(names), prefix)
        return len(names)

    @property
    def resident_bytes(self) -> int:
        with self._lock:
            return self._lru.memory

    def _remember(self, name: str, obj: StoredObject) -> ObjectInfo:
        """Under self._lock: index and hold ``obj``, then evict what no longer fits."""
        info = self._index[name] = _info(name, obj)
        self._resident[name] = obj
        self._lru.add(name, obj.size)
        for victim in self._lru.victims(keep=name):
            self._resident.pop(victim, None)
            if not self.storage.durable:
                self._index.pop(victim, None)
                logger.info("evicted %s (storage none: it is gone)", victim)
        return info

    def _forget(self, name: str) -> None:
        self._index.pop(name, None)
        self._resident.pop(name, None)
        self._lru.remove(name)
