"""Vectors in a dict, with the store's time to live: for tests and a worker without Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

__all__ = ["MemoryVectorStore"]


class MemoryVectorStore:
    """:class:`~worker.vectors.base.VectorStore` in this process. ``clock``: monotonic
    seconds (injectable for tests). Unbounded but for expiry: an entry expired is dropped
    when read, and all expired entries on every ``put_many`` of new keys."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self.gets = 0
        self.puts = 0

    def __len__(self) -> int:
        return len(self._items)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        self.gets += 1
        now = self._clock()
        out: dict[str, bytes] = {}
        for key in keys:
            item = self._items.get(key)
            if item is None:
                continue
            if item[1] <= now:
                del self._items[key]
            else:
                out[key] = item[0]
        return out

    async def put_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        self.puts += 1
        now = self._clock()
        if any(key not in self._items for key in items):
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
        deadline = now + ttl_s
        for key, value in items.items():
            self._items[key] = (bytes(value), deadline)
