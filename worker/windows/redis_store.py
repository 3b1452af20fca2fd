"""The window store in Redis: one Lua script per user, one pipeline round trip per batch.

Layout (see :mod:`worker.windows.keys`), the three keys with the same TTL::

    {prefix}:{<tag>}:w   sorted set   score = ts (ms), member = event_id
    {prefix}:{<tag>}:e   hash         event_id -> event JSON (orjson), without user_id
    {prefix}:{<tag>}:v   string       version token of the window (window_cache.py): while
                                      it is the one this store holds, the script returns
                                      event ids instead of payloads

:meth:`RedisWindowStore.exchange` also runs a caller's extra commands in the same pipeline, so
other state kept beside the windows travels in the windows' round trip.

Equal scores are ordered by member (byte order), which is the contract's tie
rule (by ``event_id``). Scores are doubles, exact for integer milliseconds.

Why not ``Script.__call__(client=pipeline)``: redis-py's pipeline then sends
``SCRIPT EXISTS`` (and ``SCRIPT LOAD`` when missing) before *every* execute,
a second round trip per batch. Instead the pipeline sends a bare ``EVALSHA``
(one for the whole batch; one per user on a cluster) and, only if a reply is
``NOSCRIPT`` (server restarted, failed over, or ``SCRIPT FLUSH``), loads the
script and re-sends the failed users' calls.
A NOSCRIPT reply means that call did nothing, so re-sending is exact; the
script is idempotent anyway, which also makes redis-py's own retry of a whole
pipeline after a connection error safe. On Redis Cluster the pipeline is split
by node and the parts are sent concurrently (one round trip of latency).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from worker.errors import ConfigError, StoreError
from worker.redis_client import RedisClient, describe_error, queue_script, redis_client
from worker.windows.codec import (
    DecodedEvents,
    check_limits,
    decode_window,
    encode_event,
    join_payloads,
)
from worker.windows.keys import KeyBuilder, key_builder
from worker.windows.packing import pack_with_hiredis
from worker.windows.window_cache import CachedWindow, WindowCache

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["APPEND_SCRIPT", "RedisWindowStore"]

log = logging.getLogger(__name__)

# Any number of users: KEYS are (window sorted set, payload hash, version token) per user, each
# three with one hash tag (one slot). ARGV[1] max_events, ARGV[2] span_ms, ARGV[3] ttl_ms,
# ARGV[4] a new token, then per user: the token of the window the caller holds ('' for none),
# the number n of its events, then n (ts, event_id, payload) triples. Numbers travel as decimal
# strings; ts (~1.7e12 ms) is exact in Lua's doubles (up to 2**53), and the cutoff is formatted
# with %.0f (no exponent) for Redis.
# Returns one reply per user, in KEYS order: {} for an empty window, else {token, '1', event
# ids...} when the caller's token was still current before this call (it holds every event:
# its window and what it sent), else {token, '0', payloads...}; both oldest first; or an error
# for that user alone (the others are still written). The token changes with every change of
# the window (worker/windows/window_cache.py). Payloads come back as separate bulk replies, not
# joined into one JSON array here: the single-threaded server is the shared resource, so the
# join happens in Python (cheap with hiredis), which then decodes each window once.
APPEND_SCRIPT = """
local max_events = tonumber(ARGV[1])
local span_ms = tonumber(ARGV[2])
local ttl_ms = ARGV[3]
local new_token = ARGV[4]

-- unpack() is limited by the Lua C stack (~8000 values): work in chunks
local CHUNK = 1000
local function hdel(ekey, ids)
  for i = 1, #ids, CHUNK do
    redis.call('HDEL', ekey, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
  end
end

local function window(wkey, ekey, vkey, known, first, last)
  local before = redis.call('GET', vkey)
  local current = before and known == before
  local changed = not before

  -- 1. add new events; ZADD NX is the idempotency gate (first write wins)
  for i = first, last, 3 do
    if redis.call('ZADD', wkey, 'NX', ARGV[i], ARGV[i + 1]) == 1 then
      redis.call('HSET', ekey, ARGV[i + 1], ARGV[i + 2])
      changed = true
    end
  end

  -- 2. trim by span: keep ts >= newest - span_ms
  local newest = redis.call('ZRANGE', wkey, -1, -1, 'WITHSCORES')
  if #newest == 0 then
    redis.call('DEL', vkey)
    return {}
  end
  local cutoff = '(' .. string.format('%.0f', tonumber(newest[2]) - span_ms)
  local old = redis.call('ZRANGEBYSCORE', wkey, '-inf', cutoff)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', wkey, '-inf', cutoff)
    hdel(ekey, old)
    changed = true
  end

  -- 3. trim by count: keep the newest max_events (rank order = ts, then event_id)
  local excess = redis.call('ZCARD', wkey) - max_events
  if excess > 0 then
    local dropped = redis.call('ZRANGE', wkey, 0, excess - 1)
    redis.call('ZREMRANGEBYRANK', wkey, 0, excess - 1)
    hdel(ekey, dropped)
    changed = true
  end

  -- 4. the window, oldest first: ids only if the caller holds the rest
  local ids = redis.call('ZRANGE', wkey, 0, -1)
  local token = before
  local out
  if current and redis.call('HLEN', ekey) == #ids then
    if changed then token = new_token end
    out = {token, '1'}
    for i = 1, #ids do
      out[i + 2] = ids[i]
    end
  else
    -- an id without payload (should not happen) is dropped
    out = {'', '0'}
    for i = 1, #ids, CHUNK do
      local upto = math.min(i + CHUNK - 1, #ids)
      local payloads = redis.call('HMGET', ekey, unpack(ids, i, upto))
      for j = 1, #payloads do
        if payloads[j] then
          out[#out + 1] = payloads[j]
        else
          redis.call('ZREM', wkey, ids[i + j - 1])
          changed = true
        end
      end
    end
    if changed then token = new_token end
    out[1] = token
  end
  if token ~= before then
    redis.call('SET', vkey, token)
  end

  -- 5. TTL on every key of the user (retention restarts at each write)
  redis.call('PEXPIRE', wkey, ttl_ms)
  redis.call('PEXPIRE', ekey, ttl_ms)
  redis.call('PEXPIRE', vkey, ttl_ms)
  return out
end

local replies = {}
local a = 5
for k = 1, #KEYS, 3 do
  local last = a + 1 + 3 * tonumber(ARGV[a + 1])
  local ok, reply = pcall(window, KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a], a + 2, last)
  if ok then
    replies[#replies + 1] = reply
  elseif type(reply) == 'table' and reply.err then
    replies[#replies + 1] = reply
  else
    replies[#replies + 1] = redis.error_reply(tostring(reply))
  end
  a = last + 1
end
return replies
"""


class RedisWindowStore:
    """:class:`~worker.windows.base.WindowStore` on Redis or Redis Cluster.

    ``client`` is owned by the store from now on: :meth:`stop` closes it.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        keys: KeyBuilder,
        max_events: int,
        span_ms: int,
        ttl_s: int,
        decode_cache: int = 0,
    ) -> None:
        check_limits(max_events=max_events, span_ms=span_ms, ttl_s=ttl_s)
        self._client = pack_with_hiredis(client) if isinstance(client, aioredis.Redis) else client
        self._decoded = DecodedEvents(decode_cache)
        self._windows = WindowCache(decode_cache)
        self._keys = keys
        self.max_events = max_events
        self.span_ms = span_ms
        self.ttl_s = ttl_s
        # register_script only computes the SHA1 (no I/O); loading happens in start()
        # and on NOSCRIPT.
        self._script = client.register_script(APPEND_SCRIPT)
        self._head = (str(max_events), str(span_ms), str(ttl_s * 1000))
        self._cluster = isinstance(client, RedisCluster)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, secret: bytes | None = None, cluster: bool | None = None
    ) -> RedisWindowStore:
        """A store on a new client for ``settings.redis_url``, with the settings' credentials,
        TLS CA, key secret (``INTENT_KEY_SECRET``) and cluster mode unless given here."""
        if secret is None:
            keys = key_builder(settings)
        else:
            try:
                keys = KeyBuilder(settings.key_prefix, secret)
            except ValueError as exc:
                raise ConfigError(f"INTENT_KEY_PREFIX={settings.key_prefix!r}: {exc}") from None
        return cls(
            redis_client(settings, cluster=cluster),
            keys=keys,
            max_events=settings.window_max_events,
            span_ms=settings.window_seconds * 1000,
            ttl_s=settings.window_ttl_seconds,
            decode_cache=settings.window_cache_events,
        )

    @property
    def decoded(self) -> DecodedEvents:
        """The decoded-event cache (its ``hits`` and ``misses`` are metrics)."""
        return self._decoded

    @property
    def windows(self) -> WindowCache:
        """The windows kept between batches (``hits``: read as ids only; ``misses``: whole)."""
        return self._windows

    @property
    def client(self) -> RedisClient:
        return self._client

    @property
    def keys(self) -> KeyBuilder:
        return self._keys

    async def start(self) -> None:
        """Check the connection and load the script, so the first batch is one round trip."""
        try:
            await self._client.ping()
            await self._client.script_load(APPEND_SCRIPT)
        except RedisError as exc:
            raise StoreError(f"redis not usable at start: {describe_error(exc)}") from exc

    async def stop(self) -> None:
        try:
            await self._client.aclose()
        except RedisError as exc:  # closing is best effort; report, never mask the caller's error
            log.warning("closing the redis client failed: %s", describe_error(exc))

    async def __aenter__(self) -> RedisWindowStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except RedisError as exc:
            raise StoreError(f"redis ping failed: {describe_error(exc)}") from exc

    async def forget(self, user_id: str) -> None:
        keys = self._keys.user_keys(user_id)
        self._windows.drop(user_id)
        try:
            # one multi-key DEL: every key of a user shares a hash tag, so one cluster slot
            await self._client.delete(*keys)
        except RedisError as exc:
            raise StoreError(f"redis delete of a user's state failed: "
                             f"{describe_error(exc)}") from exc

    async def append(self, batch: Mapping[str, Sequence[dict]]) -> dict[str, list[dict]]:
        return (await self.exchange(batch))[0]

    async def exchange(self, batch: Mapping[str, Sequence[dict]],
                       commands: Sequence[tuple[Any, ...]] = ()
                       ) -> tuple[dict[str, list[dict]], list[Any]]:
        """:meth:`append`, plus ``commands`` (Redis commands as argument tuples, such as
        ``("ZRANGE", key, 0, -1)``) run in the same pipeline after the window script: one round
        trip for both. Returns the windows and the commands' replies, in order. A command
        that fails raises :class:`StoreError` once everything was sent (like a failed user)."""
        if not batch and not commands:
            return {}, []
        token = self._windows.next_token()
        calls: dict[str, _Call] = {}
        held: dict[str, CachedWindow | None] = {}
        sent: dict[str, dict[bytes, bytes]] = {}  # user -> event id -> payload, first one wins
        for user, events in batch.items():
            held[user] = cached = self._windows.get(user)
            args: list[Any] = [cached.token if cached is not None else "", len(events)]
            payloads = sent[user] = {}
            for event in events:
                ts, event_id, payload = encode_event(event, user)
                args.extend((ts, event_id, payload))
                payloads.setdefault(event_id.encode(), payload)
            calls[user] = _Call(self._keys.user_keys(user), args)
        extra = list(commands)
        try:
            replies, extra_replies = await self._run(calls, extra, token)
            if any(isinstance(r, NoScriptError) for r in replies.values()):
                log.info("append script missing on the server (NOSCRIPT); loading it")
                await self._client.script_load(APPEND_SCRIPT)
                again = {u: calls[u] for u, r in replies.items() if isinstance(r, NoScriptError)}
                replies.update((await self._run(again, [], token))[0])
        except RedisError as exc:
            raise StoreError(
                f"redis append of {len(calls)} users' events failed: {describe_error(exc)}"
            ) from exc
        failed = [r for r in (*replies.values(), *extra_replies) if isinstance(r, Exception)]
        if failed:
            raise StoreError(
                f"redis append failed for {len(failed)} of {len(calls) + len(extra)} commands "
                f"(others were written; retrying the batch is safe): {describe_error(failed[0])}"
            ) from failed[0]
        windows = {user: self._window(user, reply, held[user], sent[user])
                   for user, reply in replies.items()}
        unknown = [user for user, window in windows.items() if window is None]
        if unknown:  # ids this store does not hold (should not happen): read them whole
            log.warning("%d cached windows disagreed with redis; reading them whole", len(unknown))
            for user in unknown:
                self._windows.drop(user)
            again = {u: _Call(calls[u].keys, ["", *calls[u].args[1:]]) for u in unknown}
            try:
                replies, _ = await self._run(again, [], token)
            except RedisError as exc:
                raise StoreError(f"redis read of {len(again)} windows failed: "
                                 f"{describe_error(exc)}") from exc
            for user, reply in replies.items():
                if isinstance(reply, Exception):
                    raise StoreError(
                        f"redis read of a window failed: {describe_error(reply)}") from reply
                windows[user] = self._window(user, reply, None, {})
        return windows, extra_replies

    def _window(self, user: str, reply: list, held: CachedWindow | None,
                sent: Mapping[bytes, bytes]) -> list[dict] | None:
        """The window of one script reply, cached with its token; ``None`` when the reply
        names an event this store holds nowhere."""
        if not reply:
            self._windows.drop(user)
            return []
        token, ids_only, items = _text(reply[0]), reply[1] in (b"1", "1"), reply[2:]
        if not ids_only:
            self._windows.misses += 1
            window = self._decoded.window(items, user)
            ids = [e["event_id"].encode() for e in window]
        else:
            self._windows.hits += 1
            ids = [i.encode() for i in items] if items and isinstance(items[0], str) else items
            have = held.events if held is not None else {}
            window = [have.get(i) for i in ids]
            if None in window:  # the events this batch added
                at = [k for k, event in enumerate(window) if event is None]
                payloads = [sent.get(ids[k]) for k in at]
                if None in payloads:
                    return None
                # new payloads: not in the decoded-event cache, decode them at once
                for k, event in zip(at, decode_window(join_payloads(payloads), user), strict=True):
                    window[k] = event
        self._windows.put(user, token, ids, window)
        return window

    async def _run(self, calls: Mapping[str, _Call], extra: Sequence[tuple[Any, ...]],
                   token: str) -> tuple[dict[str, Any], list[Any]]:
        """One pipeline: the script for every user (:func:`~worker.redis_client.queue_script`:
        one call, or one per user on a cluster), then ``extra`` commands; errors as values."""
        pipe = self._client.pipeline(transaction=False)
        queue_script(pipe, self._script.sha, [(c.keys, c.args) for c in calls.values()],
                     cluster=self._cluster, head=(*self._head, token))
        for command in extra:
            pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        n = len(calls) if self._cluster else min(len(calls), 1)
        if len(replies) != n + len(extra):  # pragma: no cover - redis-py guarantees it
            raise StoreError(f"redis pipeline gave {len(replies)} replies to "
                             f"{n + len(extra)} commands")
        if self._cluster:  # each call answers for its one user
            per_user = [r if isinstance(r, Exception) else r[0] for r in replies[:n]]
        elif not n:
            per_user = []
        elif isinstance(replies[0], Exception):  # the call as a whole failed (NOSCRIPT, ...)
            per_user = [replies[0]] * len(calls)
        else:
            per_user = replies[0]
        if len(per_user) != len(calls):  # pragma: no cover - the script answers every user
            raise StoreError(f"the window script gave {len(per_user)} replies for "
                             f"{len(calls)} users")
        return dict(zip(calls, per_user, strict=True)), list(replies[n:])


@dataclass(frozen=True, slots=True)
class _Call:
    """One user's part of the window script call: its keys and its arguments."""

    keys: tuple[str, str, str]
    args: list[Any]  # held token, number of events, (ts, event_id, payload) per event


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
