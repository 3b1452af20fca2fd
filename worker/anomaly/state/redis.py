"""The detectors' state in Redis, beside the windows (:class:`~worker.windows.RedisWindowStore`).

Keys (built with the window store's :class:`~worker.windows.KeyBuilder`)::

    {prefix}:{<tag>}:a        hash: alert kind -> "<ts>|<alert_id>;<ts>|<alert_id>..." (cooldowns,
                              under the user's hash tag, with the window's TTL)
    {prefix}:cat:<category>   sorted set: score = event ts, member = "<ln price>|<event_id>"
                              (not personal data, so never pseudonymised)

The price samples' reads and writes ride in the window store's pipeline (its ``exchange``
runs extra commands after the window script): one round trip per batch for both. Cooldowns
have their own small pipelines (read for users with candidates, written after delivery).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from worker.anomaly.state.base import (
    CooldownState,
    Exchanged,
    PriceExchange,
    member,
    member_log_price,
)
from worker.errors import StoreError
from worker.redis_client import describe_error
from worker.windows import RedisWindowStore

__all__ = ["COOLDOWNS", "SAMPLES", "RedisDetectorState"]

log = logging.getLogger(__name__)

COOLDOWNS = "a"  # the user key name of the cooldown hash
SAMPLES = "cat"  # the shared key namespace of the category samples


class RedisDetectorState:
    """:class:`~worker.anomaly.state.base.DetectorState` on the window store's Redis client
    (whose lifecycle is the window store's: start and stop that one)."""

    def __init__(self, windows: RedisWindowStore) -> None:
        self.windows = windows
        self._keys = windows.keys

    def cooldown_key(self, user_id: str) -> str:
        return self._keys.user_key(user_id, COOLDOWNS)

    def category_key(self, category: str) -> str:
        return self._keys.shared_key(SAMPLES, category)

    async def exchange(self, batch: Mapping[str, Sequence[dict]],
                       prices: PriceExchange | None = None) -> Exchanged:
        if prices is None or prices.empty:
            windows, _ = await self.windows.exchange(batch)
            return Exchanged(windows)
        windows, replies = await self.windows.exchange(batch, self._price_commands(prices))
        # the reads come first (see _price_commands), one reply per category read
        samples = {category: [member_log_price(m) for m in members]
                   for category, members in zip(prices.read, replies, strict=False)}
        return Exchanged(windows, samples)

    def _price_commands(self, prices: PriceExchange) -> list[tuple[Any, ...]]:
        """Reads first, then adds: the pipeline runs in order, so reads see the state before."""
        commands: list[tuple[Any, ...]] = [
            ("ZRANGE", self.category_key(c), 0, -1) for c in prices.read]
        ttl_ms = prices.ttl_s * 1000
        for category, entries in prices.add.items():
            key = self.category_key(category)
            args: list[Any] = []
            for ts, event_id, logp in entries:
                args.extend((ts, member(event_id, logp)))
            commands.append(("ZADD", key, "NX", *args))
            commands.append(("ZREMRANGEBYRANK", key, 0, -(prices.capacity + 1)))
            commands.append(("PEXPIRE", key, ttl_ms))
        return commands

    async def cooldowns(self, users: Iterable[str]) -> dict[str, CooldownState]:
        users = list(dict.fromkeys(users))
        if not users:
            return {}
        pipe = self.windows.client.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(self.cooldown_key(user))
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis read of alert cooldowns failed: "
                             f"{describe_error(exc)}") from exc
        out: dict[str, CooldownState] = {}
        for user, entries in zip(users, replies, strict=True):
            state: CooldownState = {}
            for kind, raw in entries.items():
                kind = kind.decode() if isinstance(kind, bytes) else kind
                raw = raw.decode() if isinstance(raw, bytes) else raw
                recent = []
                for item in raw.split(";"):
                    ts, _, alert = item.partition("|")
                    try:
                        recent.append((int(ts), alert))
                    except ValueError:
                        log.warning("ignoring a malformed alert cooldown entry %r", item[:80])
                state[kind] = recent
            out[user] = state
        return out

    async def save_cooldowns(self, updates: Mapping[str, CooldownState]) -> None:
        if not updates:
            return
        pipe = self.windows.client.pipeline(transaction=False)
        ttl_ms = self.windows.ttl_s * 1000
        for user, state in updates.items():
            if not state:
                continue
            key = self.cooldown_key(user)
            pipe.hset(key, mapping={kind: ";".join(f"{ts}|{aid}" for ts, aid in recent)
                                    for kind, recent in state.items()})
            pipe.pexpire(key, ttl_ms)
        try:
            await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"redis write of alert cooldowns failed: "
                             f"{describe_error(exc)}") from exc

    async def forget(self, user_id: str) -> None:
        try:
            await self.windows.client.delete(self.cooldown_key(user_id))
        except RedisError as exc:
            raise StoreError(f"redis delete of a user's cooldowns failed: "
                             f"{describe_error(exc)}") from exc
