"""The session manager's durable state: one interface, several engines.

``open_storage(url)`` picks the engine: ``sqlite:///abs/path.db`` or ``sqlite://rel/path.db``
(SQLite, the default), ``postgres://user:password@host:port/database`` (PostgreSQL, with the
``postgres`` extra installed), ``memory`` or ``none`` (no durability). Every engine group-commits:
``write()`` returns once the batch holding its records is committed.
"""

from flame.session_manager.storage._base import Storage
from flame.session_manager.storage._memory import MemoryStorage
from flame.session_manager.storage._open import open_storage
from flame.session_manager.storage._postgres import PostgresStorage
from flame.session_manager.storage._records import (
    DeleteApplication,
    DeleteSession,
    PutApplication,
    PutSession,
    PutTask,
    Record,
    StoredState,
)
from flame.session_manager.storage._sqlite import SqliteStorage

__all__ = [
    "DeleteApplication",
    "DeleteSession",
    "MemoryStorage",
    "PostgresStorage",
    "PutApplication",
    "PutSession",
    "PutTask",
    "Record",
    "SqliteStorage",
    "Storage",
    "StoredState",
    "open_storage",
]
