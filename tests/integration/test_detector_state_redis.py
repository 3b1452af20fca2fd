"""The detectors' state beside the window stores: category price samples and alert cooldowns,
against a real redis-server, each behaviour checked on both stores (memory and Redis)."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from tests.support.redis_spy import count_all_sends
from worker.anomaly.state import (
    MemoryDetectorState,
    PriceExchange,
    RedisDetectorState,
    state_for,
)
from worker.windows import KeyBuilder, MemoryWindowStore, RedisWindowStore

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def ev(event_id: str, ts: int, user: str = "u1") -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": "view", "ts": ts}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str, prefix: str, admin):
    if request.param == "memory":
        yield MemoryDetectorState(MemoryWindowStore(max_events=50, span_ms=HOUR_MS, ttl_s=600))
        return
    s = RedisWindowStore(aioredis.Redis.from_url(redis_url), keys=KeyBuilder(prefix),
                         max_events=50, span_ms=HOUR_MS, ttl_s=600)
    await s.start()
    yield RedisDetectorState(s)
    await s.stop()


def prices(read=(), add=None, capacity=5) -> PriceExchange:
    return PriceExchange(read=tuple(read), add=add or {}, capacity=capacity, ttl_s=60)


async def test_samples_are_read_before_the_batch_adds_its_prices(store) -> None:
    got = await store.exchange({"u1": [ev("a", T0)]},
                               prices(read=["phones"], add={"phones": [(T0, "a", 1.0)]}))
    assert got.samples == {"phones": []} and [e["event_id"] for e in got.windows["u1"]] == ["a"]
    got = await store.exchange({}, prices(read=["phones"], add={"phones": [(T0 + 1, "b", 2.0)]}))
    assert got.samples == {"phones": [1.0]}
    assert (await store.exchange({}, prices(read=["phones"]))).samples == {"phones": [1.0, 2.0]}


async def test_samples_are_deduplicated_by_event_and_trimmed_to_the_newest(store) -> None:
    add = {"c": [(T0 + i, f"e{i}", float(i)) for i in range(8)]}
    await store.exchange({}, prices(add=add, capacity=5))
    await store.exchange({}, prices(add=add, capacity=5))  # redelivered: nothing counts twice
    late = {"c": [(T0 - 100, "old", 99.0)]}  # older than every kept sample: trimmed at once
    await store.exchange({}, prices(add=late, capacity=5))
    got = await store.exchange({}, prices(read=["c", "unknown"], capacity=5))
    assert got.samples == {"c": [3.0, 4.0, 5.0, 6.0, 7.0], "unknown": []}


async def test_log_prices_survive_exactly(store) -> None:
    rnd = random.Random(3)
    values = [rnd.uniform(-5, 12) for _ in range(20)]
    add = {"c": [(T0 + i, f"e{i}", v) for i, v in enumerate(values)]}
    await store.exchange({}, prices(add=add, capacity=50))
    assert (await store.exchange({}, prices(read=["c"], capacity=50))).samples["c"] == values


async def test_cooldowns_round_trip_and_forget(store) -> None:
    assert await store.cooldowns(["u1", "u2"]) == {"u1": {}, "u2": {}}
    await store.save_cooldowns({"u1": {"bot_cadence": [(T0, "id-1")]}})
    await store.save_cooldowns({"u1": {"price_outlier": [(T0 + 5, "id-2")]}, "u2": {}})
    assert await store.cooldowns(["u1", "u2"]) == {
        "u1": {"bot_cadence": [(T0, "id-1")], "price_outlier": [(T0 + 5, "id-2")]}, "u2": {}}
    await store.save_cooldowns({"u1": {"bot_cadence": [(T0, "id-1"), (T0 + 9, "id-3")]}})
    assert (await store.cooldowns(["u1"]))["u1"]["bot_cadence"] == [(T0, "id-1"), (T0 + 9, "id-3")]
    await store.forget("u1")
    assert await store.cooldowns(["u1"]) == {"u1": {}}


async def test_redis_layout_ttls_and_one_round_trip(redis_url: str, prefix: str, admin,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyBuilder(prefix)
    windows = RedisWindowStore(aioredis.Redis.from_url(redis_url), keys=keys, max_events=50,
                               span_ms=HOUR_MS, ttl_s=600)
    store = state_for(windows)
    assert isinstance(store, RedisDetectorState)
    await windows.start()
    try:
        sends = count_all_sends(monkeypatch)
        batch = {f"u{i}": [ev(f"e{i}", T0, f"u{i}")] for i in range(20)}
        add = {f"cat{j}": [(T0, f"e{j}", 1.0)] for j in range(10)}
        got = await store.exchange(batch, prices(read=[f"cat{j}" for j in range(10)], add=add))
        assert sends[0] == 1  # windows and samples: one pipeline, one round trip
        assert len(got.windows) == 20 and got.samples == {f"cat{j}": [] for j in range(10)}
        monkeypatch.undo()
        # the key layout: the same names as ever, so stored state stays readable
        assert store.category_key("cat0") == f"{prefix}:cat:cat0"
        assert store.cooldown_key("u1") == f"{prefix}:{{u1}}:a"
        assert 0 < await admin.pttl(f"{prefix}:cat:cat0") <= 60_000
        await store.save_cooldowns({"u1": {"bot_cadence": [(T0, "x")]}})
        assert 0 < await admin.pttl(f"{prefix}:{{u1}}:a") <= 600_000
        assert await admin.hget(f"{prefix}:{{u1}}:a", "bot_cadence") == f"{T0}|x".encode()
        await store.forget("u1")
        assert not await admin.exists(f"{prefix}:{{u1}}:a")
        assert await admin.exists(*keys.user_keys("u1")) == 3  # the window is the window store's
        await windows.forget("u1")
        assert not await admin.exists(*keys.user_keys("u1"))
    finally:
        await windows.stop()


async def test_category_names_with_braces_are_escaped(redis_url: str, prefix: str, admin) -> None:
    windows = RedisWindowStore(aioredis.Redis.from_url(redis_url), keys=KeyBuilder(prefix),
                               max_events=5, span_ms=HOUR_MS, ttl_s=60)
    store = RedisDetectorState(windows)
    assert store.category_key("a{b}c") == f"{prefix}:cat:a%7Bb%7Dc"
    await windows.start()
    try:
        await store.exchange({}, prices(add={"a{b}c": [(T0, "e", 3.0)]}))
        assert (await store.exchange({}, prices(read=["a{b}c"]))).samples == {"a{b}c": [3.0]}
        assert await admin.exists(f"{prefix}:cat:a%7Bb%7Dc")
    finally:
        await windows.stop()
