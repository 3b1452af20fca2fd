"""Pending outcomes in Redis, beside the windows (on the window store's client).

Keys (built with the window store's :class:`~worker.windows.KeyBuilder`)::

    {prefix}:{<tag>}:o             hash: score_id -> pending entry or done marker
                                   (worker/outcomes/pending.py), with the window's TTL
    {prefix}:od:<topic>:<partition>  sorted set: score = end of the horizon (ms),
                                   member = <score_id><tag> (a pointer; the hash decides)

The user hashes are written by one script call per batch and read by one, or two when due
scores were found (their entries, after the due-index lookups). On a Redis Cluster, where a
script's keys must share a slot, each is one call per user, and the cluster pipeline sends
each node its calls at once. So a batch's outcome state costs a few commands, not a few per
user. A
``NOSCRIPT`` reply (server restarted or failed over) loads the scripts and runs the step again:
every step is idempotent (reads; HSETNX, HSET, HDEL, ZADD, ZREM).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from worker.errors import StoreError
from worker.outcomes.state import SCORE_ID_CHARS, DueQuery, Reads, Writes, split_member
from worker.redis_client import RedisClient, describe_error, queue_script
from worker.windows.keys import KeyBuilder

if TYPE_CHECKING:
    from worker.windows import RedisWindowStore

__all__ = ["OUTCOMES", "RedisOutcomeState"]

_GLOB = re.compile(r"[*?\[\]\\]")  # characters a SCAN pattern treats specially

OUTCOMES = "o"  # the user key name of the pending hash
DUE = "od"  # the shared key namespace of the due indexes

# KEYS: user hashes. ARGV, per key: n, then n fields; n = -1 for every field (HGETALL).
# Returns, per key, the flat HGETALL reply or the HMGET values (false for a missing field).
READ_SCRIPT = """
local out = {}
local a = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  if n < 0 then
    out[k] = redis.call('HGETALL', KEYS[k])
    a = a + 1
  else
    out[k] = redis.call('HMGET', KEYS[k], unpack(ARGV, a + 1, a + n))
    a = a + 1 + n
  end
end
return out
"""

# KEYS: user hashes. ARGV[1] ttl_ms, then per key: n_add (field, value)*, n_done (field,
# value)*, n_del field*. Adds only where absent (HSETNX: a done marker stays), done markers
# replace, deletes drop. Where something was added, the TTL restarts and the reply is the
# hash's field count afterwards (the bound is checked on growth only); elsewhere -1, and a
# hash without a TTL (re-made by a marker after it expired or was deleted) gets one.
WRITE_SCRIPT = """
local ttl = ARGV[1]
local out = {}
local a = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local added = tonumber(ARGV[a]); a = a + 1
  for i = 1, added do redis.call('HSETNX', key, ARGV[a], ARGV[a + 1]); a = a + 2 end
  local n = tonumber(ARGV[a]); a = a + 1
  for i = 1, n do redis.call('HSET', key, ARGV[a], ARGV[a + 1]); a = a + 2 end
  n = tonumber(ARGV[a]); a = a + 1
  for i = 1, n do redis.call('HDEL', key, ARGV[a]); a = a + 1 end
  if added > 0 then
    redis.call('PEXPIRE', key, ttl)
    out[k] = redis.call('HLEN', key)
  else
    if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
    out[k] = -1
  end
end
return out
"""


class RedisOutcomeState:
    """:class:`~worker.outcomes.state.OutcomeState` on a Redis client someone else owns (the
    window store's: it starts and closes it). ``ttl_s``: the user hashes' TTL (the window's);
    the due indexes get ``due_ttl_s`` from their last write."""

    def __init__(self, client: RedisClient, *, keys: KeyBuilder, ttl_s: int,
                 due_ttl_s: int | None = None) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        self._client = client
        self._keys = keys
        self._ttl_ms = str(ttl_s * 1000)
        self._due_ttl_ms = (due_ttl_s or ttl_s) * 1000
        self._cluster = isinstance(client, RedisCluster)
        self._read = client.register_script(READ_SCRIPT)  # SHA only, no I/O
        self._write = client.register_script(WRITE_SCRIPT)

    @classmethod
    def beside(cls, windows: RedisWindowStore) -> RedisOutcomeState:
        """On a :class:`~worker.windows.RedisWindowStore`'s client, keys and TTL."""
        return cls(windows.client, keys=windows.keys, ttl_s=windows.ttl_s)

    def tag(self, user_id: str) -> str:
        return self._keys.tag(user_id)

    def published_id(self, tag: str) -> str:
        return self._keys.published_id(tag)

    def key(self, tag: str) -> str:
        return self._keys.tag_key(tag, OUTCOMES)

    def due_key(self, topic: str, partition: int) -> str:
        return self._keys.shared_key(DUE, f"{topic}:{partition}")

    async def start(self) -> None:
        try:
            await self._load()
        except RedisError as exc:
            raise StoreError(f"redis not usable for outcomes: {describe_error(exc)}") from exc

    async def read(self, users: Sequence[str], due: Sequence[DueQuery],
                   fields: Mapping[str, Sequence[str]] | None = None) -> Reads:
        reads = Reads()
        fields = {t: list(sids) for t, sids in (fields or {}).items() if sids}
        if not users and not due and not fields:
            return reads
        asked = list(fields)

        def first(pipe) -> None:
            self._script_calls(pipe, self._read.sha,
                               [(self.key(u), [-1]) for u in users]
                               + [(self.key(t), [len(fields[t]), *fields[t]]) for t in asked])
            for q in due:
                pipe.zrangebyscore(self.due_key(q.topic, q.partition), "-inf",
                                   f"({q.cutoff_ms}", start=0, num=q.limit)

        replies = await self._run(first, "read of pending outcomes")
        hashes, found = self._split(replies, len(users) + len(asked))
        for user, flat in zip(users, hashes, strict=False):
            reads.entries[user] = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        for tag, got in zip(asked, hashes[len(users):], strict=True):
            reads.due_values.setdefault(tag, {}).update(
                (sid, v if v else None) for sid, v in zip(fields[tag], got, strict=True))
        wanted: dict[str, list[str]] = {}
        for q, members in zip(due, found, strict=True):
            for raw in members:
                member = _text(raw)
                reads.due.append((q.topic, q.partition, member))
                sid, tag = split_member(member)
                wanted.setdefault(tag, []).append(sid)
        if wanted:
            tags = list(wanted)
            calls = [(self.key(t), [len(wanted[t]), *wanted[t]]) for t in tags]
            values, _ = self._split(await self._run(
                lambda pipe: self._script_calls(pipe, self._read.sha, calls),
                "read of due outcomes"), len(tags))
            for tag, got in zip(tags, values, strict=True):
                reads.due_values.setdefault(tag, {}).update(
                    (sid, v if v else None) for sid, v in zip(wanted[tag], got, strict=True))
        return reads

    async def write(self, writes: Writes) -> dict[str, int]:
        if writes.empty():
            return {}
        tags = list(dict.fromkeys([*writes.add, *writes.done, *writes.delete]))
        calls = []
        for tag in tags:
            args: list[Any] = []
            for fields in (writes.add.get(tag, {}), writes.done.get(tag, {})):
                args.append(len(fields))
                for sid, value in fields.items():
                    args.extend((sid, value))
            dropped = writes.delete.get(tag, [])
            args.extend((len(dropped), *dropped))
            calls.append((self.key(tag), args))

        def build(pipe) -> None:
            self._script_calls(pipe, self._write.sha, calls, head=(self._ttl_ms,))
            for (topic, partition), members in writes.due_add.items():
                key = self.due_key(topic, partition)
                pipe.zadd(key, {m: ms for ms, m in members})
                pipe.pexpire(key, self._due_ttl_ms)
            for (topic, partition), members in writes.due_remove.items():
                if members:
                    pipe.zrem(self.due_key(topic, partition), *members)

        replies = await self._run(build, "write of pending outcomes")
        sizes, _ = self._split(replies, len(tags))
        out = {}
        for tag, size in zip(tags, sizes, strict=True):
            if size >= 0:
                out[tag] = int(size)
        return out

    async def forget(self, user_id: str) -> None:
        """Drop the user's pending outcomes and their due-index members (which name the user
        by tag): a scan of the due indexes, for erasure requests, not the stream."""
        tag = self.tag(user_id)
        member = "?" * SCORE_ID_CHARS + _GLOB.sub(r"\\\g<0>", tag)
        try:
            await self._client.delete(self.key(tag))
            async for key in self._client.scan_iter(match=self._keys.shared_key(DUE, "*")):
                found = [m async for m, _ in self._client.zscan_iter(key, match=member)]
                if found:
                    await self._client.zrem(key, *found)
        except RedisError as exc:
            raise StoreError(f"redis delete of a user's pending outcomes failed: "
                             f"{describe_error(exc)}") from exc

    # -- plumbing ------------------------------------------------------------------------

    def _script_calls(self, pipe, sha: str, calls: Sequence[tuple[str, list[Any]]],
                      head: tuple[Any, ...] = ()) -> None:
        queue_script(pipe, sha, [((key,), args) for key, args in calls], cluster=self._cluster,
                     head=head)

    def _split(self, replies: list[Any], n_keys: int) -> tuple[list[Any], list[Any]]:
        """The per-key script replies (one list per key) and the replies after them."""
        if not n_keys:
            return [], replies
        if self._cluster:
            return [r[0] for r in replies[:n_keys]], replies[n_keys:]
        return list(replies[0]), replies[1:]

    async def _run(self, build: Callable[[Any], None], what: str) -> list[Any]:
        """A pipeline of what ``build`` queues; run again once after loading the scripts if a
        call found them missing (every step is idempotent)."""
        try:
            replies = await self._execute(build)
            if any(isinstance(r, NoScriptError) for r in replies):
                await self._load()
                replies = await self._execute(build)
        except RedisError as exc:
            raise StoreError(f"redis {what} failed: {describe_error(exc)}") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            raise StoreError(f"redis {what} failed for {len(failed)} commands: "
                             f"{describe_error(failed[0])}") from failed[0]
        return list(replies)

    async def _execute(self, build: Callable[[Any], None]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        return list(await pipe.execute(raise_on_error=False))

    async def _load(self) -> None:
        await self._client.script_load(READ_SCRIPT)
        await self._client.script_load(WRITE_SCRIPT)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
