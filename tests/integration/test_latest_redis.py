"""Each user's latest score in a real Redis and a real 3-node Redis Cluster: the compare on
event time (a redelivered older batch never overwrites a newer score), the key beside the
window (same hash tag, pseudonymised with the window), the TTL, one round trip per write, the
lookup helper and the ``score`` and ``forget`` commands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner
from redis.asyncio.cluster import RedisCluster

from tests.support.redis_spy import count_all_sends, counting_client
from tests.unit.test_scoring_pipeline import RecordingScorer, ev, msgs
from worker.cli import main
from worker.latest import (
    KEEP_NEWER_SCRIPT,
    LatestScore,
    RedisLatestScores,
    latest_score,
    latest_score_key,
    stored_record,
)
from worker.scoring.pipeline import Pipeline
from worker.settings import load_settings
from worker.windows import KeyBuilder, RedisWindowStore

T0 = 1_700_000_000_000
TTL_S = 600


def record(user: str, ts: int, eid: str, score: float = 0.5) -> LatestScore:
    doc = {"user_id": user, "event_id": eid, "score": score}
    return LatestScore(user, ts, eid, orjson.dumps(doc))


@pytest.fixture
async def counted(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisLatestScores, list]]:
    client, sends = counting_client(redis_url)
    yield RedisLatestScores(client, keys=KeyBuilder(prefix), ttl_s=TTL_S), sends
    await client.aclose()


async def test_a_later_record_replaces_an_earlier_one_never_the_reverse(
        counted: tuple[RedisLatestScores, list], admin: aioredis.Redis) -> None:
    store, _ = counted
    assert await store.write([record("u1", T0 + 10, "b", 0.2)]) == 1
    # a redelivered older batch, an equal one, then ties in event time by event id
    assert await store.write([record("u1", T0, "z", 0.9)]) == 0
    assert await store.write([record("u1", T0 + 10, "b", 0.9)]) == 0
    assert await store.write([record("u1", T0 + 10, "a", 0.9)]) == 0
    assert (await store.read("u1"))["score"] == 0.2
    assert await store.write([record("u1", T0 + 10, "c", 0.3)]) == 1
    assert (await store.read("u1"))["event_id"] == "c"
    assert await store.write([record("u1", T0 + 11, "a", 0.4)]) == 1
    assert await store.read("u1") == {"user_id": "u1", "event_id": "a", "score": 0.4}
    assert await store.read("nobody") is None


async def test_ids_compare_byte_by_byte(
        counted: tuple[RedisLatestScores, list]) -> None:
    store, _ = counted
    await store.write([record("u1", T0, "e-10")])
    assert await store.write([record("u1", T0, "e-9")]) == 1  # "9" > "1": byte order
    assert await store.write([record("u1", T0, "e-10")]) == 0
    assert await store.write([record("u1", T0, "e-9x")]) == 1  # a longer id with that prefix
    assert await store.write([record("u1", T0 - 1, "zzz")]) == 0  # 1 ms older loses


async def test_the_ttl_is_the_windows_and_restarts_with_every_write(
        counted: tuple[RedisLatestScores, list], admin: aioredis.Redis) -> None:
    store, _ = counted
    await store.write([record("u1", T0 + 5, "b")])
    await admin.pexpire(store.key("u1"), 1000)
    await store.write([record("u1", T0, "a")])  # kept, but the user is active: TTL again
    assert (TTL_S - 10) * 1000 < await admin.pttl(store.key("u1")) <= TTL_S * 1000


async def test_many_users_in_one_round_trip(counted: tuple[RedisLatestScores, list]) -> None:
    store, sends = counted
    await store.write([record("warm", T0, "x")])  # the script loaded (NOSCRIPT once)
    sends[0] = 0
    assert await store.write([record(f"u{i}", T0 + i, f"e{i}") for i in range(200)]) == 200
    assert sends[0] == 1
    assert (await store.read("u199"))["event_id"] == "e199"


async def test_noscript_is_recovered(counted: tuple[RedisLatestScores, list],
                                     admin: aioredis.Redis) -> None:
    store, _ = counted
    await store.write([record("u1", T0, "a")])
    await admin.script_flush()
    assert await store.write([record("u1", T0 + 1, "b"), record("u2", T0, "c")]) == 2
    assert (await store.read("u1"))["event_id"] == "b"


@pytest.mark.parametrize("secret", [None, "hmac-key"])
async def test_the_key_sits_beside_the_window_and_the_helper_finds_it(
        redis_url: str, prefix: str, admin: aioredis.Redis, secret: str | None) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix, key_secret=secret,
                             window_seconds=60, window_ttl_seconds=TTL_S)
    windows = RedisWindowStore.from_settings(settings)
    await windows.start()
    try:
        await windows.append({"alice@example.com": [{"event_id": "a", "event_type": "view",
                                                     "user_id": "alice@example.com",
                                                     "ts": T0}]})
        store = RedisLatestScores.beside(windows)
        await store.write([record("alice@example.com", T0, "a", 0.7)])
        key = latest_score_key("alice@example.com", settings)
        assert key == store.key("alice@example.com")
        window_key = windows.keys.window("alice@example.com")
        assert key.rsplit(":", 1)[0] == window_key.rsplit(":", 1)[0]  # same hash tag
        assert key.endswith(":s") and await admin.exists(key)
        if secret:  # pseudonymised: no raw user id in any key
            assert "alice" not in key
            assert not [k async for k in admin.scan_iter(match=f"{prefix}:*alice*")]
        got = await latest_score(admin, "alice@example.com", settings)
        assert got == {"user_id": "alice@example.com", "event_id": "a", "score": 0.7}
        assert await latest_score(admin, "bob", settings) is None
        if secret:  # another secret finds nothing: the keys are the secret's
            other = load_settings(redis_url=redis_url, key_prefix=prefix, key_secret="other")
            assert await latest_score(admin, "alice@example.com", other) is None
    finally:
        await windows.stop()


@pytest.mark.parametrize("secret", [None, "hmac-key"])
async def test_the_pipeline_keeps_the_newer_score_when_an_older_batch_is_redelivered(
        redis_url: str, prefix: str, admin: aioredis.Redis, secret: str | None) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix, window_max_events=10,
                             window_seconds=3600, anomaly_enabled=False, key_secret=secret)
    windows = RedisWindowStore.from_settings(settings)
    await windows.start()
    try:
        pipe = Pipeline.from_settings(settings, store=windows, scorer=RecordingScorer())
        assert pipe.latest is not None
        first = msgs([ev("a1", "u1", T0), ev("b1", "u2", T0)])
        second = msgs([ev("a2", "u1", T0 + 1000, "add_to_cart")])
        for batch in (first, second):
            result = await pipe.process(batch)
            pipe.keep_latest(result)
            await pipe.latest.flush(timeout_s=5)
        newest = orjson.loads(result.scores[0].value)
        # the first batch again (a redelivery after a lost commit): scored, published, kept?
        again = await pipe.process(first)
        pipe.keep_latest(again)
        await pipe.latest.flush(timeout_s=5)
        assert await latest_score(windows.client, "u1", settings) == newest
        assert (await latest_score(windows.client, "u2", settings))["event_id"] == "b1"
        assert pipe.latest_counts() == (2 + 1, 2, 0)  # u1, u2, u1 written; u1, u2 kept
        latest_key = latest_score_key("u1", settings)
        assert orjson.loads(await admin.hget(latest_key, "record")) == {
            k: v for k, v in newest.items() if k != "user_id"}
        if secret:  # pseudonymised: no raw user id in any key or value
            for key in [k async for k in admin.scan_iter(match=f"{prefix}:*")]:
                assert b"u1" not in key and b"u2" not in key
                kind = await admin.type(key)
                values = (await admin.hgetall(key)).values() if kind == b"hash" else \
                    [await admin.get(key)] if kind == b"string" else []
                assert not [v for v in values if b'"u1"' in v or b'"u2"' in v], key
    finally:
        await windows.stop()


@pytest.mark.parametrize("secret", [None, "hmac-key"])
def test_score_and_forget_commands(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                   secret: str | None) -> None:
    # a plain test: the commands run their own event loop
    prefix = f"s{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("INTENT_REDIS_URL", redis_url)
    monkeypatch.setenv("INTENT_KEY_PREFIX", prefix)
    if secret:
        monkeypatch.setenv("INTENT_KEY_SECRET", secret)
    settings = load_settings()
    published = {"score_id": "f00", "user_id": "alice", "session_id": None, "event_id": "a",
                 "event_ids": ["a"], "score": 0.8125, "model": {"name": "m", "version": "1"},
                 "window": {"events": 1, "span_s": 0.0}, "event_ts": "2023-11-14T22:13:20Z",
                 "scored_at": "2023-11-14T22:13:21Z", "latency_ms": 12}

    async def setup() -> None:
        windows = RedisWindowStore.from_settings(settings)
        await windows.start()
        await RedisLatestScores.beside(windows).write(
            [LatestScore("alice", T0, "a", stored_record(published))])
        await windows.stop()

    async def stored() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await client.exists(latest_score_key("alice", settings))
        finally:
            await client.aclose()

    asyncio.run(setup())
    runner = CliRunner()
    result = runner.invoke(main, ["score", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == orjson.dumps(published).decode()  # as published, in order
    result = runner.invoke(main, ["score", "alice"])
    assert result.exit_code == 0 and "0.8125" in result.output and "m 1" in result.output
    result = runner.invoke(main, ["score", "bob"])
    assert result.exit_code == 1 and "no score for user 'bob'" in result.output
    result = runner.invoke(main, ["score", "bob", "--json"])
    assert result.exit_code == 1 and result.output.splitlines()[0] == "null"
    assert asyncio.run(stored()) == 1
    result = runner.invoke(main, ["forget", "alice"])
    assert result.exit_code == 0, result.output
    assert asyncio.run(stored()) == 0
    assert runner.invoke(main, ["score", "alice"]).exit_code == 1


# ------------------------------------------------------------------ Redis Cluster


@pytest.fixture
async def on_cluster(cluster_ports: list[int], monkeypatch: pytest.MonkeyPatch
                     ) -> AsyncIterator[tuple[RedisLatestScores, RedisCluster, list]]:
    sends = count_all_sends(monkeypatch)
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    store = RedisLatestScores(client, keys=KeyBuilder(f"c{uuid.uuid4().hex[:10]}", b"k"),
                              ttl_s=TTL_S)
    yield store, client, sends
    await client.aclose()


async def test_cluster_one_pipeline_per_node_and_the_compare_on_event_time(
        on_cluster: tuple[RedisLatestScores, RedisCluster, list],
        cluster_ports: list[int]) -> None:
    store, client, sends = on_cluster
    users = [f"u{i}" for i in range(100)]
    slots = {client.keyslot(store.key(u)) for u in users}
    assert len(slots) > len(cluster_ports)  # spread over the cluster
    await store.write([record("warm", T0, "x")])  # NOSCRIPT handled on that node
    await client.script_load(KEEP_NEWER_SCRIPT)  # every primary has the script now
    sends[0] = 0
    assert await store.write([record(u, T0 + 5, "b") for u in users]) == 100
    assert sends[0] <= len(cluster_ports)
    # a redelivered older batch, and a newer one for half the users
    assert await store.write([record(u, T0, "a", 0.9) for u in users]) == 0
    assert await store.write([record(u, T0 + 6, "c") for u in users[:50]]) == 50
    got = [await store.read(u) for u in users]
    assert [r["event_id"] for r in got] == ["c"] * 50 + ["b"] * 50


async def test_cluster_noscript_on_every_node_is_recovered(
        on_cluster: tuple[RedisLatestScores, RedisCluster, list]) -> None:
    store, client, _ = on_cluster
    users = [f"n{i}" for i in range(30)]
    await store.write([record(u, T0, "a") for u in users])
    await client.script_flush()
    assert await store.write([record(u, T0 + 1, "b") for u in users]) == 30
    assert {(await store.read(u))["event_id"] for u in users} == {"b"}


async def test_cluster_key_in_the_slot_of_the_users_window(
        on_cluster: tuple[RedisLatestScores, RedisCluster, list]) -> None:
    store, client, _ = on_cluster
    keys = KeyBuilder("c", b"k")
    store2 = RedisLatestScores(client, keys=keys, ttl_s=TTL_S)
    for user in ("alice", "bob", "{weird}"):
        assert client.keyslot(store2.key(user)) == client.keyslot(keys.window(user))


async def test_the_cost_measure_runs_and_cleans_up(redis_url: str, admin: aioredis.Redis) -> None:
    from loadtest.latest_write import measure

    result = await measure(redis_url, users=5, batches=3)
    assert result["records"] == 15 and result["client_cpu_us_per_record"] > 0
    assert not [k async for k in admin.scan_iter(match="lw*")]
