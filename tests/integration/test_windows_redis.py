"""The window stores against a real redis-server (fixture ``redis_url``), on fixed event time.

The behaviour tests are parametrized over both stores (memory and Redis) so the
two keep the same semantics; a seeded random sequence then checks that they
return identical windows batch after batch. The rest is Redis-only: TTLs,
erasure, pseudonymised keys, one round trip per batch, NOSCRIPT, errors.
Each test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.redis_spy import counting_client
from worker.errors import ConfigError, StoreError
from worker.ops.stack import free_port
from worker.settings import load_settings
from worker.windows import KeyBuilder, MemoryWindowStore, RedisWindowStore, WindowStore

T0 = 1_700_000_000_000  # fixed event time, epoch ms
HOUR_MS = 3_600_000
TTL_S = 600

MakeStore = Callable[..., Awaitable[WindowStore]]


def ev(event_id: str, ts: int, user: str = "u1", **extra: object) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": "view", "ts": ts, **extra}


def ids(window: list[dict]) -> list[str]:
    return [e["event_id"] for e in window]


def random_batch(rng: random.Random, step: int, users: list[str], event_ids: list[str], *,
                 users_min: int, events_max: int) -> dict[str, list[dict]]:
    """``users_min``-4 of ``users``, each with 0-``events_max`` events: late arrivals, ties and
    redeliveries (often with a different payload)."""
    return {
        user: [ev(rng.choice(event_ids), T0 + step * 5 + rng.randint(-70, 10), user,
                  n=rng.randint(0, 3)) for _ in range(rng.randint(0, events_max))]
        for user in rng.sample(users, rng.randint(users_min, 4))
    }


@pytest.fixture
async def make_redis(
    redis_url: str, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[RedisWindowStore]]]:
    stores: list[RedisWindowStore] = []

    async def make(
        *,
        max_events: int = 100,
        span_ms: int = HOUR_MS,
        ttl_s: int = TTL_S,
        secret: bytes | None = None,
        client: aioredis.Redis | None = None,
        start: bool = True,
        cache: int = 0,
    ) -> RedisWindowStore:
        store = RedisWindowStore(
            client or aioredis.Redis.from_url(redis_url),
            keys=KeyBuilder(prefix, secret),
            max_events=max_events,
            span_ms=span_ms,
            ttl_s=ttl_s,
            decode_cache=cache,
        )
        if start:
            await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.stop()


@pytest.fixture(params=["memory", "redis", "redis-cached"])
def make_store(
    request: pytest.FixtureRequest, make_redis: Callable[..., Awaitable[RedisWindowStore]]
) -> MakeStore:
    if request.param == "redis":
        return make_redis
    if request.param == "redis-cached":  # windows and decoded events kept between batches
        return functools.partial(make_redis, cache=1000)

    async def make(
        *, max_events: int = 100, span_ms: int = HOUR_MS, ttl_s: int = TTL_S
    ) -> WindowStore:
        store = MemoryWindowStore(max_events=max_events, span_ms=span_ms, ttl_s=ttl_s)
        await store.start()
        return store

    return make


# --- behaviour, both stores ---------------------------------------------------------------


async def test_out_of_order_arrival_is_ordered_by_event_time(make_store: MakeStore) -> None:
    store = await make_store()
    out = await store.append({"u1": [ev("c", T0 + 30), ev("a", T0 + 10), ev("b", T0 + 20)]})
    assert ids(out["u1"]) == ["a", "b", "c"]
    out = await store.append({"u1": [ev("late", T0 + 15), ev("early", T0)]})
    assert ids(out["u1"]) == ["early", "a", "late", "b", "c"]


async def test_ties_are_ordered_by_event_id(make_store: MakeStore) -> None:
    store = await make_store()
    # code-point order == UTF-8 byte order (Redis' tie order): "z" < "é" < U+E000 < "😀"
    tied = ["😀", "b", "\ue000", "z", "é", "a", "B"]
    out = await store.append({"u1": [ev(i, T0) for i in tied] + [ev("0", T0 + 1)]})
    assert ids(out["u1"]) == ["B", "a", "b", "z", "é", "\ue000", "😀", "0"]


async def test_count_bound_keeps_the_newest(make_store: MakeStore) -> None:
    store = await make_store(max_events=3)
    out = await store.append({"u1": [ev(f"e{i}", T0 + i) for i in range(5)]})
    assert ids(out["u1"]) == ["e2", "e3", "e4"]
    out = await store.append({"u1": [ev("z", T0 + 2), ev("a", T0 + 2)]})  # tie at the edge
    assert ids(out["u1"]) == ["z", "e3", "e4"]


async def test_span_bound_is_measured_back_from_the_newest_event(make_store: MakeStore) -> None:
    store = await make_store(span_ms=1000)
    out = await store.append({"u1": [ev("a", T0), ev("b", T0 + 500), ev("c", T0 + 1000)]})
    assert ids(out["u1"]) == ["a", "b", "c"]  # exactly span_ms back is kept
    out = await store.append({"u1": [ev("d", T0 + 1001)]})
    assert ids(out["u1"]) == ["b", "c", "d"]
    out = await store.append({"u1": [ev("too_late", T0), ev("just_in", T0 + 1)]})
    assert ids(out["u1"]) == ["just_in", "b", "c", "d"]


async def test_redelivery_is_idempotent_first_write_wins(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append({"u1": [ev("a", T0, query="first"), ev("b", T0 + 1)]})
    out = await store.append(
        {"u1": [ev("a", T0 + 5, query="second"), ev("b", T0 + 1), ev("c", T0 + 2)]}
    )
    assert ids(out["u1"]) == ["a", "b", "c"]
    assert out["u1"][0] == ev("a", T0, query="first")


async def test_duplicates_within_one_batch_keep_the_first(make_store: MakeStore) -> None:
    store = await make_store()
    out = await store.append({"u1": [ev("a", T0, query="one"), ev("a", T0, query="two")]})
    assert out["u1"] == [ev("a", T0, query="one")]


async def test_trimmed_event_redelivered_does_not_come_back(make_store: MakeStore) -> None:
    store = await make_store(max_events=2)
    await store.append({"u1": [ev("a", T0), ev("b", T0 + 1), ev("c", T0 + 2)]})
    assert ids((await store.append({"u1": [ev("a", T0)]}))["u1"]) == ["b", "c"]


async def test_several_users_in_one_batch_are_independent(make_store: MakeStore) -> None:
    store = await make_store(max_events=2)
    out = await store.append(
        {
            "u1": [ev("a", T0), ev("b", T0 + 1), ev("c", T0 + 2)],
            "u2": [ev("a", T0 + 9, user="u2")],
            "u3": [],
        }
    )
    assert set(out) == {"u1", "u2", "u3"}
    assert ids(out["u1"]) == ["b", "c"]
    assert out["u2"] == [ev("a", T0 + 9, user="u2")]
    assert out["u3"] == []


async def test_empty_batch_and_user_without_events(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.append({}) == {}
    await store.append({"u1": [ev("a", T0, product={"id": "p1", "price": 9.99})]})
    assert (await store.append({"u1": []}))["u1"] == [
        ev("a", T0, product={"id": "p1", "price": 9.99})
    ]


async def test_returned_window_is_a_fresh_copy(make_store: MakeStore) -> None:
    store = await make_store()
    if isinstance(store, RedisWindowStore) and store.windows.size:
        pytest.skip("cached windows share their events, read-only (docs/contracts.md)")
    out = await store.append({"u1": [ev("a", T0, product={"id": "p1"})]})
    out["u1"][0]["product"]["id"] = "mutated"
    assert (await store.append({"u1": []}))["u1"] == [ev("a", T0, product={"id": "p1"})]


async def test_forget(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append({"u1": [ev("a", T0)], "u2": [ev("b", T0, user="u2")]})
    await store.forget("u1")
    await store.forget("nobody")
    assert await store.append({"u1": [], "u2": []}) == {"u1": [], "u2": [ev("b", T0, user="u2")]}


async def test_bad_event_raises_before_anything_is_written(make_store: MakeStore) -> None:
    store = await make_store()
    with pytest.raises(ValueError, match="batched under user"):
        await store.append({"u0": [ev("ok", T0, user="u0")], "u1": [ev("x", T0, user="u2")]})
    assert await store.append({"u0": [], "u1": []}) == {"u0": [], "u1": []}


async def test_memory_and_redis_agree_on_a_random_sequence(
    make_redis: Callable[..., Awaitable[RedisWindowStore]],
) -> None:
    rng = random.Random(20240601)
    limits = {"max_events": 8, "span_ms": 60}
    memory = MemoryWindowStore(**limits)
    redis_store = await make_redis(**limits)
    users = [f"user{i}" for i in range(6)] + ["ü}{"]
    event_ids = [f"e{i}" for i in range(40)] + ["é", "😀", "E1", "e1 "]
    for step in range(80):
        batch = random_batch(rng, step, users, event_ids, users_min=0, events_max=6)
        assert await redis_store.append(batch) == await memory.append(batch), f"step {step}"


# --- Redis only ---------------------------------------------------------------------------


async def test_ttl_is_set_on_every_key_and_refreshed_by_every_write(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, prefix: str
) -> None:
    store = await make_redis(ttl_s=TTL_S)
    await store.append({"u1": [ev("a", T0), ev("b", T0 + 1)], "u2": [ev("c", T0, user="u2")]})
    keys = [k async for k in admin.scan_iter(match=f"{prefix}:*")]
    assert sorted(keys) == sorted(k.encode() for u in ("u1", "u2") for k in store.keys.user_keys(u))
    for key in keys:
        assert 0 < await admin.pttl(key) <= TTL_S * 1000, key
    # shorten by hand, then a write (even one that adds nothing) restores the full TTL
    for key in keys:
        await admin.pexpire(key, 5_000)
    await store.append({"u1": [ev("a", T0)], "u2": []})
    for key in keys:
        assert (TTL_S - 60) * 1000 < await admin.pttl(key) <= TTL_S * 1000, key


async def test_forget_removes_every_key(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, prefix: str
) -> None:
    store = await make_redis()
    await store.append({"u1": [ev("a", T0)], "u2": [ev("b", T0, user="u2")]})
    await store.forget("u1")
    remaining = {k async for k in admin.scan_iter(match=f"{prefix}:*")}
    assert remaining == {k.encode() for k in store.keys.user_keys("u2")}
    await store.forget("u2")
    assert [k async for k in admin.scan_iter(match=f"{prefix}:*")] == []


async def test_pseudonymised_keys_and_values_hold_no_raw_user_id(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, prefix: str
) -> None:
    store = await make_redis(secret=b"test-secret")
    users = ["alice@example.com", "user-4711", "bob"]
    out = await store.append({u: [ev(f"e{i}", T0 + i, user=u) for i in range(3)] for u in users})
    assert all(e["user_id"] == u for u in users for e in out[u])  # restored on the way out
    keys = [k async for k in admin.scan_iter(match=f"{prefix}:*")]
    assert len(keys) == 3 * len(users)
    dump = b"".join(keys)
    for key in keys:
        if key.endswith(b":e"):
            dump += b"".join(f + v for f, v in (await admin.hgetall(key)).items())
        elif key.endswith(b":v"):
            dump += await admin.get(key)
        else:
            dump += b"".join(await admin.zrange(key, 0, -1))
    for user in users:
        assert user.encode() not in dump
    await store.forget("alice@example.com")
    assert len([k async for k in admin.scan_iter(match=f"{prefix}:*")]) == 3 * (len(users) - 1)


async def commandstats(admin: aioredis.Redis) -> dict[str, int]:
    stats = await admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()}


def delta(before: dict[str, int], after: dict[str, int], prefix: str) -> int:
    return sum(n - before.get(k, 0) for k, n in after.items() if k.startswith(prefix))


async def test_a_batch_of_500_events_over_100_users_is_one_round_trip(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, redis_url: str
) -> None:
    client, sends = counting_client(redis_url)
    store = await make_redis(client=client)  # start(): connects, loads the script
    batch = {f"u{u}": [ev(f"e{u}-{i}", T0 + i, f"u{u}") for i in range(5)] for u in range(100)}
    before, sends[0] = await commandstats(admin), 0
    out = await store.append(batch)
    after = await commandstats(admin)
    assert sends[0] == 1
    # and the server saw one EVALSHA for the whole batch, no SCRIPT EXISTS/LOAD, nothing else
    assert delta(before, after, "evalsha") == 1
    assert delta(before, after, "script") == 0
    assert sum(len(w) for w in out.values()) == 500


async def test_noscript_after_script_flush_still_works(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, redis_url: str
) -> None:
    client, sends = counting_client(redis_url)
    store = await make_redis(client=client)
    await store.append({"u1": [ev("a", T0)]})
    await admin.script_flush()
    sends[0] = 0
    out = await store.append({"u1": [ev("b", T0 + 1)], "u2": [ev("c", T0, user="u2")]})
    assert ids(out["u1"]) == ["a", "b"] and ids(out["u2"]) == ["c"]
    assert sends[0] == 3  # pipeline (NOSCRIPT), SCRIPT LOAD, pipeline again
    sends[0] = 0
    await store.append({"u1": [ev("d", T0 + 2)]})
    assert sends[0] == 1
    # a store that was never started, on a server without the script
    await admin.script_flush()
    fresh = await make_redis(start=False)
    assert ids((await fresh.append({"u1": [ev("e", T0 + 3)]}))["u1"]) == ["a", "b", "d", "e"]


async def test_a_large_redelivered_batch_leaves_no_duplicates(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis
) -> None:
    # one user with 9000 events also exercises the script's chunked unpack() (Lua stack limit)
    store = await make_redis(max_events=10_000)
    batch = {f"u{u}": [ev(f"e{i}", T0 + i % 500, f"u{u}") for i in range(100)] for u in range(50)}
    batch["big"] = [ev(f"e{i:05d}", T0 + i, "big") for i in range(9000)]
    first = await store.append(batch)
    rng = random.Random(7)
    redelivered = {
        u: rng.sample([{**e, "query": "redelivered"} for e in events], len(events))
        for u, events in batch.items()
    }
    second = await store.append(redelivered)
    assert second == first
    for user, window in second.items():
        assert len({e["event_id"] for e in window}) == len(window) == len(batch[user])
        w, e, _ = store.keys.user_keys(user)
        assert await admin.zcard(w) == await admin.hlen(e) == len(batch[user])
    # trimming thousands at once (chunked HDEL) keeps the sorted set and the hash in step
    small = await make_redis(max_events=10)
    out = await small.append({"big": [ev("last", T0 + 10_000, "big")]})
    assert ids(out["big"]) == [f"e{i:05d}" for i in range(8991, 9000)] + ["last"]
    w, e, _ = small.keys.user_keys("big")
    assert await admin.zcard(w) == await admin.hlen(e) == 10


async def test_script_error_for_one_user_is_a_store_error_others_are_written(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis
) -> None:
    store = await make_redis()
    await admin.set(store.keys.window("broken"), "not a sorted set")
    with pytest.raises(StoreError, match="WRONGTYPE") as info:
        await store.append({"ok": [ev("a", T0, "ok")], "broken": [ev("b", T0, "broken")],
                            "after": [ev("c", T0, "after")]})
    assert info.value.retriable
    # one script call holds the batch: users before and after the broken one are written
    out = await store.append({"ok": [], "after": []})
    assert ids(out["ok"]) == ["a"] and ids(out["after"]) == ["c"]


async def test_unreachable_redis_is_a_retriable_store_error() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    store = RedisWindowStore(client, keys=KeyBuilder("x"), max_events=5, span_ms=1000, ttl_s=10)
    calls = [store.start, store.ping, lambda: store.append({"u1": [ev("a", T0)]})]
    for call in [*calls, lambda: store.forget("u1")]:
        with pytest.raises(StoreError) as info:
            await call()
        assert info.value.retriable
    await store.stop()


async def test_from_settings_and_async_with(
    redis_url: str, prefix: str, admin: aioredis.Redis
) -> None:
    settings = load_settings(
        redis_url=redis_url,
        key_prefix=prefix,
        window_max_events=2,
        window_seconds=10,
        window_ttl_seconds=30,
    )
    async with RedisWindowStore.from_settings(settings) as store:
        assert isinstance(store, WindowStore)
        await store.ping()
        out = await store.append({"u1": [ev("a", T0), ev("b", T0 + 10_000), ev("c", T0 + 10_001)]})
        assert ids(out["u1"]) == ["b", "c"]
        assert 0 < await admin.pttl(f"{prefix}:{{u1}}:w") <= 30_000


def test_from_settings_rejects_a_prefix_with_braces() -> None:
    with pytest.raises(ConfigError, match="INTENT_KEY_PREFIX"):
        RedisWindowStore.from_settings(load_settings(key_prefix="a{b}"))


async def test_a_client_with_decode_responses_works_too(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], redis_url: str
) -> None:
    store = await make_redis(client=aioredis.Redis.from_url(redis_url, decode_responses=True))
    out = await store.append({"u1": [ev("b", T0 + 1, query="é😀"), ev("a", T0)]})
    assert out["u1"] == [ev("a", T0), ev("b", T0 + 1, query="é😀")]


async def test_an_id_without_payload_is_dropped_not_returned_broken(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis
) -> None:
    # the two keys always get the same TTL; this only guards against a hand-deleted hash
    store = await make_redis()
    await store.append({"u1": [ev("a", T0), ev("b", T0 + 1)]})
    await admin.hdel(store.keys.events("u1"), "a")
    out = await store.append({"u1": [ev("c", T0 + 2)]})
    assert ids(out["u1"]) == ["b", "c"]
    assert await admin.zcard(store.keys.window("u1")) == 2
    assert ids((await store.append({"u1": [ev("a", T0)]}))["u1"]) == ["a", "b", "c"]


# --- the window cache (version tokens) --------------------------------------------------------


async def test_a_cached_window_comes_back_as_ids_only_until_someone_else_writes_it(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], redis_url: str
) -> None:
    client, _ = counting_client(redis_url)
    mine = await make_redis(cache=1000, client=client)
    other = await make_redis(cache=1000)  # another worker, after a rebalance
    await mine.append({"u1": [ev("a", T0, product={"id": "p1"})]})
    assert (mine.windows.hits, mine.windows.misses) == (0, 1)
    out = await mine.append({"u1": [ev("b", T0 + 1)]})
    assert ids(out["u1"]) == ["a", "b"] and out["u1"][0]["product"] == {"id": "p1"}
    assert (mine.windows.hits, mine.windows.misses) == (1, 1)
    await other.append({"u1": [ev("c", T0 + 2)]})
    out = await mine.append({"u1": [ev("d", T0 + 3)]})
    assert ids(out["u1"]) == ["a", "b", "c", "d"]  # not the cached a, b plus d
    assert (mine.windows.hits, mine.windows.misses) == (1, 2)
    # a write that changes nothing keeps the token: still ids only
    assert ids((await mine.append({"u1": [ev("a", T0)]}))["u1"]) == ["a", "b", "c", "d"]
    assert mine.windows.hits == 2
    # an erasure by anyone: the cached window must not come back
    await other.forget("u1")
    assert ids((await mine.append({"u1": [ev("e", T0 + 4)]}))["u1"]) == ["e"]


async def test_cached_stores_sharing_users_agree_with_memory_on_a_random_sequence(
    make_redis: Callable[..., Awaitable[RedisWindowStore]],
) -> None:
    # three workers on the same keys (rebalances), two with small caches that evict, one
    # without; forget and redeliveries in between; every window must be what memory says
    rng = random.Random(20261130)
    limits = {"max_events": 6, "span_ms": 60}
    memory = MemoryWindowStore(**limits)
    stores = [await make_redis(**limits, cache=12), await make_redis(**limits, cache=1000),
              await make_redis(**limits)]
    users = [f"user{i}" for i in range(6)]
    event_ids = [f"e{i}" for i in range(30)]
    for step in range(150):
        store = stores[0] if rng.random() < 0.5 else rng.choice(stores)
        if rng.random() < 0.03:
            user = rng.choice(users)
            await rng.choice(stores).forget(user)
            await memory.forget(user)
            continue
        batch = random_batch(rng, step, users, event_ids, users_min=1, events_max=4)
        assert await store.append(batch) == await memory.append(batch), f"step {step}"
    # the cached path was taken, not only the whole reads
    assert sum(s.windows.hits for s in stores) > 50


async def test_a_hand_deleted_payload_is_dropped_with_the_cache_too(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis
) -> None:
    store = await make_redis(cache=1000)
    await store.append({"u1": [ev("a", T0), ev("b", T0 + 1)]})
    await admin.hdel(store.keys.events("u1"), "a")
    assert ids((await store.append({"u1": [ev("c", T0 + 2)]}))["u1"]) == ["b", "c"]
    assert ids((await store.append({"u1": []}))["u1"]) == ["b", "c"]
    assert store.windows.hits == 1


async def test_extra_commands_run_in_the_windows_pipeline_and_failures_raise(
    make_redis: Callable[..., Awaitable[RedisWindowStore]], admin: aioredis.Redis, prefix: str
) -> None:
    store = await make_redis()
    windows, replies = await store.exchange(
        {"u1": [ev("a", T0)]}, [("SET", f"{prefix}:x", "1"), ("GET", f"{prefix}:x")])
    assert ids(windows["u1"]) == ["a"] and replies == [True, b"1"]
    assert await store.exchange({}, [("GET", f"{prefix}:x")]) == ({}, [b"1"])
    with pytest.raises(StoreError, match="1 of 2 commands"):  # the window was still written
        await store.exchange({"u1": [ev("b", T0 + 1)]}, [("INCR", store.keys.window("u1"))])
    assert ids((await store.append({"u1": []}))["u1"]) == ["a", "b"]
    await admin.delete(f"{prefix}:x")
