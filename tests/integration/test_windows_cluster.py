"""RedisWindowStore on a real 3-node Redis Cluster (started here, on free ports).

Checks what a single redis-server cannot: every script touches keys of one slot
(a cross-slot script would fail with CROSSSLOT), a batch goes out as one
pipeline per node, in parallel, and NOSCRIPT recovery loads the script on
every primary.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.support.redis_spy import count_all_sends
from worker.windows import KeyBuilder, MemoryWindowStore, RedisWindowStore
from worker.windows.redis_store import APPEND_SCRIPT

T0 = 1_700_000_000_000


def ev(event_id: str, ts: int, user: str) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": "view", "ts": ts}


@pytest.fixture
async def cluster_store(
    cluster_ports: list[int], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RedisWindowStore, list]]:
    """A store on the cluster, and a count of requests written to any node's socket.

    The async RedisCluster takes no connection_class, so the count patches Connection
    for this test only (nothing else talks to Redis meanwhile).
    """
    sends = count_all_sends(monkeypatch)
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    store = RedisWindowStore(
        client,
        keys=KeyBuilder(f"c{uuid.uuid4().hex[:10]}"),
        max_events=4,
        span_ms=1000,
        ttl_s=60,
        decode_cache=1000,  # the window cache's ids-only replies, routed like the rest
    )
    await store.start()
    yield store, sends
    await store.stop()


async def test_batch_over_many_users_matches_the_memory_store(
    cluster_store: tuple[RedisWindowStore, list], cluster_ports: list[int]
) -> None:
    store, sends = cluster_store
    nodes = len(cluster_ports)
    memory = MemoryWindowStore(max_events=4, span_ms=1000)
    batch = {
        f"u{u}": [ev(f"e{i}", T0 + (i * 337) % 1500, f"u{u}") for i in range(7)] for u in range(100)
    }
    slots = {store.client.keyslot(store.keys.window(u)) for u in batch}
    assert len(slots) > nodes  # the users really are spread over the cluster
    sends[0] = 0
    assert await store.append(batch) == await memory.append(batch)
    assert sends[0] <= nodes  # one pipeline per node, sent concurrently: one round trip of time
    assert await store.append(batch) == await memory.append(batch)  # redelivery
    assert store.windows.hits == len(batch)


async def test_noscript_on_every_node_is_recovered(
    cluster_store: tuple[RedisWindowStore, list],
) -> None:
    store, _ = cluster_store
    batch = {f"u{u}": [ev("a", T0, f"u{u}")] for u in range(30)}
    await store.append(batch)
    await store.client.script_flush()  # redis-py sends it to every primary
    sha = hashlib.sha1(APPEND_SCRIPT.encode(), usedforsecurity=False).hexdigest()  # Redis's id
    assert await store.client.script_exists(sha) == [False]
    more = {u: [ev("b", T0 + 1, u)] for u in batch}
    out = await store.append(more)
    assert all([e["event_id"] for e in w] == ["a", "b"] for w in out.values())
    assert await store.client.script_exists(sha) == [True]  # loaded on every primary again


async def test_forget_and_pseudonymised_keys(cluster_ports: list[int]) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    prefix = f"c{uuid.uuid4().hex[:10]}"
    async with RedisWindowStore(
        client, keys=KeyBuilder(prefix, b"k"), max_events=5, span_ms=1000, ttl_s=60
    ) as store:
        await store.append({"alice": [ev("a", T0, "alice")], "bob": [ev("b", T0, "bob")]})
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 6 and not any(b"alice" in k or b"bob" in k for k in keys)
        await store.forget("alice")
        await store.forget("bob")
        assert [k async for k in client.scan_iter(match=f"{prefix}:*")] == []


def test_cluster_client_type_is_accepted() -> None:
    # from_settings(cluster=True) builds a RedisCluster without connecting
    from worker.settings import load_settings

    store = RedisWindowStore.from_settings(load_settings(), cluster=True)
    assert isinstance(store.client, RedisCluster)
    assert not isinstance(store.client, aioredis.Redis)


async def test_detector_state_on_the_cluster(cluster_ports: list[int]) -> None:
    from worker.anomaly.state import PriceExchange, RedisDetectorState

    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    prefix = f"c{uuid.uuid4().hex[:10]}"
    async with RedisWindowStore(
        client, keys=KeyBuilder(prefix, b"k"), max_events=5, span_ms=1000, ttl_s=60
    ) as windows:
        store = RedisDetectorState(windows)
        users = {f"u{u}": [ev("a", T0, f"u{u}")] for u in range(30)}
        add = {f"cat{c}": [(T0 + c, f"e{c}", float(c))] for c in range(30)}
        read = tuple(add)
        got = await store.exchange(users, PriceExchange(read=read, add=add, capacity=10, ttl_s=60))
        assert got.samples == {c: [] for c in read} and len(got.windows) == 30
        got = await store.exchange(users, PriceExchange(read=read, capacity=10, ttl_s=60))
        assert got.samples == {f"cat{c}": [float(c)] for c in range(30)}
        await store.save_cooldowns({u: {"bot_cadence": [(T0, f"id-{u}")]} for u in users})
        assert await store.cooldowns(users) == {u: {"bot_cadence": [(T0, f"id-{u}")]}
                                                for u in users}
        for u in users:
            await store.forget(u)
            await windows.forget(u)
        left = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert left and all(b":cat:" in k for k in left)  # only the category samples remain
