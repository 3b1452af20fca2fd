"""Pending outcomes in a real Redis and a real 3-node Redis Cluster: the labels through the
pipeline, a redelivered batch, pseudonymised keys, the TTL, round trips, NOSCRIPT."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.support.redis_spy import counting_client
from tests.unit.test_outcomes_tracker import FixedScorer, batch, ev
from worker.outcomes.pending import Pending, pack
from worker.outcomes.redis_state import RedisOutcomeState
from worker.outcomes.state import DueQuery, Writes, due_member
from worker.scoring.pipeline import Pipeline
from worker.settings import load_settings
from worker.windows import KeyBuilder, RedisWindowStore

T0 = 1_700_000_000_000
MIN = 60_000
H = 600_000


async def run(pipe: Pipeline, messages) -> tuple[list[dict], list[dict]]:
    result = await pipe.process(messages)
    await pipe.confirm_outcomes(result)
    return ([orjson.loads(o.value) for o in result.scores],
            [orjson.loads(o.value) for o in result.outcomes])


async def labels_through_the_pipeline(windows: RedisWindowStore, settings) -> dict:
    pipe = Pipeline.from_settings(settings, store=windows, scorer=FixedScorer())
    assert pipe.outcomes is not None
    await pipe.outcomes.state.start()
    first = batch(ev("a", "alice@example.com", T0), ev("x", "bob", T0))
    s1, o1 = await run(pipe, first)
    _, o2 = await run(pipe, batch(ev("p", "alice@example.com", T0 + MIN, "purchase")))
    _, o_again = await run(pipe, first)  # redelivered after a lost commit
    _, o3 = await run(pipe, batch(ev("z", "carol", T0 + H + 1)))
    _, o4 = await run(pipe, batch(ev("z2", "carol", T0 + 3 * H)))
    ids = {r["user_id"]: r["score_id"] for r in s1}
    assert o1 == [] and o_again == []
    assert [(o["score_id"], o["label"]) for o in o2] == [(ids["alice@example.com"], 1)]
    assert [(o["score_id"], o["label"]) for o in o3] == [(ids["bob"], 0)]
    assert ids["bob"] not in {o["score_id"] for o in o4}
    return {"alice": o2[0], "bob": o3[0]}


@pytest.mark.parametrize("secret", [None, "hmac-key"])
async def test_labels_on_redis_with_and_without_pseudonyms(
        redis_url: str, prefix: str, admin: aioredis.Redis, secret: str | None) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix, anomaly_enabled=False,
                             key_secret=secret, outcome_lateness_s=0)
    windows = RedisWindowStore.from_settings(settings)
    await windows.start()
    try:
        got = await labels_through_the_pipeline(windows, settings)
        keys = [k async for k in admin.scan_iter(match=f"{prefix}:*")]
        assert any(k.endswith(b":o") for k in keys)
        assert f"{prefix}:od:clickstream:0".encode() in keys
        if secret:  # no raw user id in any key, member or published outcome
            tag = windows.keys.tag("alice@example.com")
            assert got["alice"]["user_id"] == tag and got["bob"]["user_id"] != "bob"
            for key in keys:
                assert b"alice" not in key and b"bob" not in key
            members = await admin.zrange(f"{prefix}:od:clickstream:0", 0, -1)
            assert members and not [m for m in members if b"bob" in m or b"carol" in m]
        else:
            assert got["alice"]["user_id"] == "alice@example.com"
        o_key = windows.keys.user_key("carol", "o")
        assert 0 < await admin.pttl(o_key) <= settings.window_ttl_seconds * 1000
    finally:
        await windows.stop()


async def test_round_trips_and_noscript(redis_url: str, prefix: str,
                                        admin: aioredis.Redis) -> None:
    client, sends = counting_client(redis_url)
    state = RedisOutcomeState(client, keys=KeyBuilder(prefix), ttl_s=600)
    try:
        await state.start()
        adds = Writes()
        for i in range(50):
            p = Pending(f"{i:032x}", f"u{i}", "e", T0 + i, H, 0.5, ("m", "1"))
            adds.add.setdefault(p.tag, {})[p.score_id] = pack(p)
            adds.due_add.setdefault(("t", 0), []).append((p.due_ms, due_member(p.score_id, p.tag)))
        sends[0] = 0
        sizes = await state.write(adds)
        assert sends[0] == 1 and sizes == {f"u{i}": 1 for i in range(50)}
        sends[0] = 0
        reads = await state.read(["u1", "u2"], [DueQuery("t", 0, T0 + H + 10, 100)])
        assert sends[0] == 2  # the hashes and the due index, then the due entries
        assert list(reads.entries["u1"]) == [f"{1:032x}"]
        assert len(reads.due) == 10 and reads.due_values["u3"][f"{3:032x}"] is not None
        await admin.script_flush()
        again = await state.read(["u1"], [DueQuery("t", 0, T0 + H + 10, 100)])
        assert again.entries["u1"] == reads.entries["u1"] and len(again.due) == 10
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_windows(cluster_ports: list[int]) -> AsyncIterator[tuple]:
    prefix = f"c{uuid.uuid4().hex[:10]}"
    settings = load_settings(anomaly_enabled=False, outcome_lateness_s=0, key_prefix=prefix)
    store = RedisWindowStore(RedisCluster(host="127.0.0.1", port=cluster_ports[0]),
                             keys=KeyBuilder(prefix), max_events=50, span_ms=3_600_000,
                             ttl_s=86_400)
    await store.start()
    yield store, settings
    await store.stop()


async def test_labels_on_a_cluster(cluster_windows: tuple) -> None:
    windows, settings = cluster_windows
    await labels_through_the_pipeline(windows, settings)


async def test_a_marker_never_leaves_a_hash_without_a_ttl(redis_url: str, prefix: str,
                                                          admin: aioredis.Redis) -> None:
    """A done marker written after the user's hash expired or was forgotten re-makes it: with
    the TTL, never without."""
    client = aioredis.Redis.from_url(redis_url)
    state = RedisOutcomeState(client, keys=KeyBuilder(prefix), ttl_s=600)
    try:
        await state.start()
        await state.write(Writes(done={"u1": {"0" * 32: b"-1"}}))
        assert 0 < await admin.pttl(state.key("u1")) <= 600_000
    finally:
        await client.aclose()


def test_exactly_once_tracks_no_outcomes(redis_url: str, prefix: str) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix,
                             processing_guarantee="exactly_once")
    pipe = Pipeline.from_settings(settings, store=RedisWindowStore.from_settings(settings),
                                  scorer=FixedScorer())
    assert pipe.outcomes is None and pipe.latest is not None


async def test_noscript_is_recovered_on_a_cluster(cluster_windows: tuple,
                                                  cluster_ports: list[int]) -> None:
    windows, _ = cluster_windows
    state = RedisOutcomeState.beside(windows)
    await state.start()
    pending = [Pending(f"{i:032x}", f"u{i}", "e", T0, H, 0.5, ("m", "1")) for i in range(20)]
    for port in cluster_ports:  # every node forgets its scripts (a restart, a failover)
        node = aioredis.Redis(port=port)
        await node.script_flush()
        await node.aclose()
    sizes = await state.write(Writes(add={p.tag: {p.score_id: pack(p)} for p in pending}))
    assert sizes == {p.tag: 1 for p in pending}
    for port in cluster_ports:
        node = aioredis.Redis(port=port)
        await node.script_flush()
        await node.aclose()
    reads = await state.read([p.tag for p in pending], [])
    assert {t: list(f) for t, f in reads.entries.items()} == {p.tag: [p.score_id] for p in pending}
