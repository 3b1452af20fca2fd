"""The windows this worker last read from Redis, so that Redis need not send them again.

Each user's keys in Redis carry a *version token* (``{prefix}:{<tag>}:v``) that the window
script replaces with a new, never reused value whenever it changes the window. The store sends
the token of the window it holds here; if Redis still has that token, nobody changed the window
since, so the script only returns the window's event ids (the store has every event: the cached
ones and the ones it just sent) instead of every payload. Any other writer (another worker after
a rebalance, an erasure, an expiry) changes or removes the token, and the script then returns
the whole window, as it always did.

Tokens are ``<instance>:<batch>``: a random id of this store object and a counter, so a token
is never set twice on a user's keys, whoever writes them.

Bounded: a :class:`~worker.caching.Generations` of ``size`` events (a window weighs its length).
``size=0`` turns the cache off: every read is a full one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from worker.caching import Generations

__all__ = ["CachedWindow", "WindowCache"]


@dataclass(frozen=True, slots=True)
class CachedWindow:
    """A window as Redis returned it, with the version token Redis had for it."""

    token: str
    events: dict[bytes, dict]  # UTF-8 event_id -> event (read-only), in window order


class WindowCache:
    """Windows by user with their version tokens; see the module docstring."""

    def __init__(self, size: int) -> None:
        self._cache: Generations[str, CachedWindow] = Generations(
            size, weight=lambda cached: len(cached.events))
        self._instance = uuid.uuid4().hex[:16]
        self._batch = 0
        self.hits = 0  # windows answered with ids only
        self.misses = 0  # windows sent whole

    @property
    def size(self) -> int:
        return self._cache.size

    def next_token(self) -> str:
        """A token for the windows one exchange may change; never returned twice."""
        self._batch += 1
        return f"{self._instance}:{self._batch}"

    def get(self, user_id: str) -> CachedWindow | None:
        return self._cache.get(user_id)

    def put(self, user_id: str, token: str, ids: list[bytes], events: list[dict]) -> None:
        """Cache ``events`` (oldest first) under ``token``; ``ids`` are their UTF-8 event ids."""
        if self._cache.size:
            self._cache.put(user_id, CachedWindow(token, dict(zip(ids, events, strict=True))))

    def drop(self, user_id: str) -> None:
        self._cache.drop(user_id)
