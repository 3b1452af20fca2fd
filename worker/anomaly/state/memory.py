"""The detectors' state in process memory, beside a :class:`~worker.windows.MemoryWindowStore`,
with the Redis state's semantics (tests, offline replays)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from worker.anomaly.state.base import (
    CooldownState,
    Exchanged,
    PriceExchange,
    member,
    member_log_price,
)
from worker.windows import MemoryWindowStore

__all__ = ["MemoryDetectorState"]


class MemoryDetectorState:
    """:class:`~worker.anomaly.state.base.DetectorState` in dicts. Nothing expires (no clock
    here). Never awaits in the middle of a call: safe for many tasks on one loop."""

    def __init__(self, windows: MemoryWindowStore) -> None:
        self.windows = windows
        # category -> member -> ts (the Redis sorted set); user_id -> cooldown state
        self._categories: dict[str, dict[str, int]] = {}
        self._cooldowns: dict[str, CooldownState] = {}

    async def exchange(self, batch: Mapping[str, Sequence[dict]],
                       prices: PriceExchange | None = None) -> Exchanged:
        windows = await self.windows.append(batch)
        samples: dict[str, list[float]] = {}
        if prices is None:
            return Exchanged(windows, samples)
        for category in prices.read:  # before the adds, as the Redis pipeline orders them
            stored = self._categories.get(category, {})
            samples[category] = [member_log_price(m) for m, _ in _ordered(stored)]
        for category, entries in prices.add.items():
            stored = self._categories.setdefault(category, {})
            for ts, event_id, logp in entries:
                stored.setdefault(member(event_id, logp), ts)  # ZADD NX
            if len(stored) > prices.capacity:
                self._categories[category] = dict(_ordered(stored)[-prices.capacity:])
        return Exchanged(windows, samples)

    async def cooldowns(self, users: Iterable[str]) -> dict[str, CooldownState]:
        return {u: {k: list(v) for k, v in self._cooldowns.get(u, {}).items()} for u in users}

    async def save_cooldowns(self, updates: Mapping[str, CooldownState]) -> None:
        for user, state in updates.items():
            if state:  # each kind's list replaces the stored one, as HSET does
                self._cooldowns.setdefault(user, {}).update({k: list(v) for k, v in state.items()})

    async def forget(self, user_id: str) -> None:
        self._cooldowns.pop(user_id, None)


def _ordered(stored: Mapping[str, int]) -> list[tuple[str, int]]:
    """Sorted-set order: by score, then member bytes (code points = UTF-8 byte order)."""
    return sorted(stored.items(), key=lambda kv: (kv[1], kv[0]))
