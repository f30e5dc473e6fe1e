"""LRU eviction of objects held in memory, bounded by bytes and by count (``cache.eviction``).

With ``fs`` storage an evicted object stays on disk and is read back on its next get; with
``none`` storage eviction is the end of it, as in Flame.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_MEMORY = 1024**3  # Flame's default, 1G


@dataclass(frozen=True)
class EvictionConfig:
    policy: str = "lru"  # "lru" or "none" (never evict)
    max_memory: int = DEFAULT_MAX_MEMORY
    max_objects: int | None = None


class LruPolicy:
    """Tracks resident objects' sizes in use order; not thread-safe (the store locks around it)."""

    def __init__(self, config: EvictionConfig) -> None:
        self.config = config
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self.memory = 0

    def __len__(self) -> int:
        return len(self._sizes)

    def touch(self, key: str) -> None:
        if key in self._sizes:
            self._sizes.move_to_end(key)

    def add(self, key: str, size: int) -> None:
        self.remove(key)
        self._sizes[key] = size
        self.memory += size

    def remove(self, key: str) -> None:
        size = self._sizes.pop(key, None)
        if size is not None:
            self.memory -= size

    def victims(self, keep: str | None = None) -> list[str]:
        """Least recently used keys to drop until within limits; ``keep`` (just written) goes last."""
        if self.config.policy == "none":
            return []
        limit_count = self.config.max_objects
        memory, count = self.memory, len(self._sizes)
        out: list[str] = []
        for key, size in self._sizes.items():
            if memory <= self.config.max_memory and (limit_count is None or count <= limit_count):
                break
            if key == keep:
                continue
            out.append(key)
            memory -= size
            count -= 1
        for key in out:
            self.remove(key)
        return out
