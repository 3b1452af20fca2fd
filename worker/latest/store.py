"""Each user's newest score record in Redis, beside the window, and the lookup of it.

Key (built with the window's :class:`~worker.windows.KeyBuilder`, so same hash tag, same
pseudonymisation)::

    {prefix}:{<tag>}:s   hash   ts     -> event time (ms) of the record's newest covered event
                                id     -> that event's id
                                record -> the score record as published (JSON, schemas/
                                          intent-score.v1.json or .v2.json) less its user_id, which
                                          the lookup puts back: no raw user id in Redis

It expires with the window (``INTENT_WINDOW_TTL_SECONDS`` after the last write of the user).

A write never replaces a newer record: :data:`KEEP_NEWER_SCRIPT` keeps the stored record unless
the new one's ``(ts, id)`` is later (ties in ``ts`` by event id, byte order, as the window's tie
rule), so a redelivered older batch, a slow worker after a rebalance or a replay cannot put an
older score back. On one Redis a write is one script call for all its users; on Redis Cluster
one call per user (its one key), which redis-py's cluster pipeline sends as one pipeline per
node, concurrently. The script is sent by SHA and loaded only on ``NOSCRIPT``, as the window
store does (worker/windows/redis_store.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from worker.errors import StoreError
from worker.redis_client import RedisClient, describe_error, queue_script
from worker.windows.keys import KeyBuilder, key_builder

if TYPE_CHECKING:
    from worker.settings import Settings
    from worker.windows import RedisWindowStore

__all__ = ["KEEP_NEWER_SCRIPT", "LATEST", "LatestScore", "RedisLatestScores", "latest_score",
           "latest_score_key", "stored_record"]

LATEST = "s"  # the user key name of the latest score

# KEYS: one latest-score hash per user. ARGV[1] ttl_ms, then per key: ts (ms, decimal), event
# id, record. Writes a record only when it is later than the stored one by (ts, id); refreshes
# the TTL either way (the user is active: the window's TTL was refreshed too). Returns how many
# records were written. ts (~1.7e12) is exact in Lua's doubles; ids compare byte by byte
# (Lua's own string comparison follows the server's locale).
KEEP_NEWER_SCRIPT = """
local function later(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local ttl_ms = ARGV[1]
local written = 0
for k = 1, #KEYS do
  local a = 2 + (k - 1) * 3
  local ts, id = ARGV[a], ARGV[a + 1]
  local stored = redis.call('HMGET', KEYS[k], 'ts', 'id')
  local newer = true
  if stored[1] and stored[2] then
    local old_ts, new_ts = tonumber(stored[1]), tonumber(ts)
    newer = new_ts > old_ts or (new_ts == old_ts and later(id, stored[2]))
  end
  if newer then
    redis.call('HSET', KEYS[k], 'ts', ts, 'id', id, 'record', ARGV[a + 2])
    written = written + 1
  end
  redis.call('PEXPIRE', KEYS[k], ttl_ms)
end
return written
"""


def stored_record(record: dict) -> bytes:
    """The bytes kept of a score record: its JSON without ``user_id`` (the key names the user,
    pseudonymised under ``INTENT_KEY_SECRET``, as the window's events leave it out too)."""
    return orjson.dumps({k: v for k, v in record.items() if k != "user_id"})


@dataclass(frozen=True, slots=True)
class LatestScore:
    """One score record to keep: its user, the event time (ms) and id of its newest covered
    event (the record's ``event_ts`` and ``event_id``), and the bytes to keep
    (:func:`stored_record`)."""

    user_id: str
    event_ts_ms: int
    event_id: str
    record: bytes

    def order(self) -> tuple[int, bytes]:
        """The order in which records replace each other (the script's rule)."""
        return self.event_ts_ms, self.event_id.encode()


def latest_score_key(user_id: str, settings: Settings) -> str:
    """The Redis key of ``user_id``'s latest score under ``settings`` (prefix, key secret): a
    hash whose field ``record`` holds the score record's JSON (for clients other than
    redis-py's asyncio one: ``HGET <key> record``)."""
    return key_builder(settings).user_key(user_id, LATEST)


async def latest_score(redis: RedisClient, user_id: str, settings: Settings) -> dict | None:
    """The newest score record the worker published for ``user_id``, or ``None`` when it has
    none (never scored, expired with its window after ``INTENT_WINDOW_TTL_SECONDS``, or
    forgotten).

    ``redis`` is a ``redis.asyncio`` client (or ``RedisCluster``) on the worker's Redis, such as
    ``worker.redis_client.redis_client(settings)``; ``settings`` give the key prefix and the key
    secret (``INTENT_KEY_PREFIX``, ``INTENT_KEY_SECRET``), which must be the worker's. One
    ``HGET``. The record is the one newest by event time of its newest event, as published
    (schemas/intent-score.v1.json, or v2 with an explanation): ``score``, ``model``,
    ``event_ts``, ``scored_at`` say what it is and how fresh. A Redis failure raises
    :class:`~worker.errors.StoreError`.
    """
    return await _read(redis, latest_score_key(user_id, settings), user_id)


class RedisLatestScores:
    """The latest score records on a Redis client that someone else owns (the window store's:
    it starts and closes it)."""

    def __init__(self, client: RedisClient, *, keys: KeyBuilder, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        self._client = client
        self._keys = keys
        self._ttl_ms = str(ttl_s * 1000)
        self._cluster = isinstance(client, RedisCluster)
        self._script = client.register_script(KEEP_NEWER_SCRIPT)  # SHA only, no I/O

    @classmethod
    def beside(cls, windows: RedisWindowStore) -> RedisLatestScores:
        """On a :class:`~worker.windows.RedisWindowStore`'s client, keys and TTL."""
        return cls(windows.client, keys=windows.keys, ttl_s=windows.ttl_s)

    def key(self, user_id: str) -> str:
        return self._keys.user_key(user_id, LATEST)

    async def write(self, scores: Sequence[LatestScore]) -> int:
        """Keep each user's record unless a later one is stored; one pipeline (one per node on
        a cluster). Returns how many were written. At most one record per user: pass the
        latest (the script would keep the later one anyway, at the cost of a second call)."""
        if not scores:
            return 0
        try:
            replies = await self._send(scores)
            if any(isinstance(r, NoScriptError) for r in replies):
                await self._client.script_load(KEEP_NEWER_SCRIPT)
                if self._cluster:  # only the failed users' calls again
                    again = [s for s, r in zip(scores, replies, strict=True)
                             if isinstance(r, NoScriptError)]
                    redone = iter(await self._send(again))
                    replies = [next(redone) if isinstance(r, NoScriptError) else r
                               for r in replies]
                else:
                    replies = await self._send(scores)
        except RedisError as exc:
            raise StoreError(f"redis write of {len(scores)} latest scores failed: "
                             f"{describe_error(exc)}") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            raise StoreError(f"redis write of latest scores failed for {len(failed)} calls: "
                             f"{describe_error(failed[0])}") from failed[0]
        return sum(int(r) for r in replies)

    async def _send(self, scores: Sequence[LatestScore]) -> list[Any]:
        """One script call for every user (one per user on a cluster), errors as values."""
        pipe = self._client.pipeline(transaction=False)
        queue_script(pipe, self._script.sha,
                     [((self.key(s.user_id),), (s.event_ts_ms, s.event_id, s.record))
                      for s in scores], cluster=self._cluster, head=(self._ttl_ms,))
        return list(await pipe.execute(raise_on_error=False))

    async def read(self, user_id: str) -> dict | None:
        """The user's stored record, or ``None``."""
        return await _read(self._client, self.key(user_id), user_id)

    async def forget(self, user_id: str) -> None:
        try:
            await self._client.delete(self.key(user_id))
        except RedisError as exc:
            raise StoreError(f"redis delete of a latest score failed: "
                             f"{describe_error(exc)}") from exc


async def _read(client: RedisClient, key: str, user_id: str) -> dict | None:
    """The record at ``key``, ``user_id`` put back where the published record has it (after
    ``score_id``)."""
    try:
        raw = await client.hget(key, "record")
    except RedisError as exc:
        raise StoreError(f"redis read of a latest score failed: {describe_error(exc)}") from exc
    if raw is None:
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"the stored latest score is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise StoreError("the stored latest score is not a JSON object")
    record.pop("user_id", None)
    score_id = record.pop("score_id", None)
    head = {"score_id": score_id} if score_id is not None else {}
    return {**head, "user_id": user_id, **record}
