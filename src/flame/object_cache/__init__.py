"""Flame's object cache: versioned objects over Apache Arrow Flight, as flamepy and Flame expect.

Modules: ``keys`` (object keys and tickets), ``objects`` (a stored object and what do_get sends),
``store`` (versions, patches, locking), ``storage`` (none / fs), ``eviction`` (LRU), ``auth`` (who
may call, and ownership of sessions), ``owners`` (who owns a session, asked of the session manager),
``server`` (the Flight calls) and ``service`` (the process: config to a running server).
"""

from flame.object_cache.keys import ObjectKey
from flame.object_cache.service import ObjectCache
from flame.object_cache.store import ObjectInfo, ObjectStore

__all__ = ["ObjectCache", "ObjectInfo", "ObjectKey", "ObjectStore"]
