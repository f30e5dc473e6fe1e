"""The session manager's durable state: one interface, several engines.

``open_storage(url)`` picks the engine: ``sqlite:///abs/path.db`` or ``sqlite://rel/path.db``
(SQLite, the default), ``postgres://user:password@host:port/database`` (PostgreSQL, with the
``postgres`` extra installed), ``memory`` or ``none`` (no durability). Every engine group-commits:
``write()`` returns once the batch holding its records is committed, and ``write_nowait(...,
on_commit=callback)`` calls back on the event loop when it is. A task's state changes after its
creation are written as narrow ``UpdateTask`` records.
"""

from flame.session_manager.storage._base import OnCommit, Storage
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
    UpdateTask,
)
from flame.session_manager.storage._sqlite import SqliteStorage

__all__ = [
    "DeleteApplication",
    "DeleteSession",
    "MemoryStorage",
    "OnCommit",
    "PostgresStorage",
    "PutApplication",
    "PutSession",
    "PutTask",
    "Record",
    "SqliteStorage",
    "Storage",
    "StoredState",
    "UpdateTask",
    "open_storage",
]
