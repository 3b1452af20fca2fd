"""Event vectors in a real Redis and a real 3-node Redis Cluster: float16 bytes exact, the TTL
set, one round trip per call, and a restarted process that reads instead of encoding."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.support.fake_encoder import FakeEncoder
from tests.support.redis_spy import count_all_sends, counting_client
from worker.errors import StoreError
from worker.model.vectors import EventVectors
from worker.ops.stack import free_port
from worker.settings import load_settings
from worker.vectors import RedisVectorStore, phrase_digest, vector_key

DIM = 384  # MiniLM's size: 768 bytes a vector
PHRASES = [f"viewed electronics smartphone, brand{i}, price {i}-{2 * i}" for i in range(1, 201)]


@pytest.fixture
async def counted(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisVectorStore, list]]:
    client, sends = counting_client(redis_url)
    async with RedisVectorStore(client, prefix=prefix) as store:
        yield store, sends


async def test_float16_bytes_round_trip_exactly_with_the_ttl(
        counted: tuple[RedisVectorStore, list], admin: aioredis.Redis, prefix: str) -> None:
    store, _ = counted
    enc = FakeEncoder("minilm-test", dim=DIM)
    vectors = EventVectors(enc, store=store, ttl_s=3600)
    out = await vectors.vectors(PHRASES[:5])
    key = f"{prefix}:vec:minilm-test:{phrase_digest(PHRASES[0])}"
    raw = await admin.get(key)
    assert raw == enc.vector(PHRASES[0]).astype("<f2").tobytes()
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f2").astype(np.float32), out[0])
    assert 3_590_000 < await admin.pttl(key) <= 3_600_000
    assert len([k async for k in admin.scan_iter(match=f"{prefix}:vec:*")]) == 5


async def test_one_round_trip_per_get_many_and_put_many(
        counted: tuple[RedisVectorStore, list]) -> None:
    store, sends = counted
    items = {vector_key("enc", p): bytes([i % 256]) * 768 for i, p in enumerate(PHRASES)}
    sends[0] = 0
    await store.put_many(items, ttl_s=60)
    assert sends[0] == 1
    sends[0] = 0
    got = await store.get_many([*items, vector_key("enc", "never written")])
    assert sends[0] == 1
    assert got == items  # the missing key is left out


async def test_a_restarted_process_reads_the_vectors_and_does_not_encode(
        redis_url: str, prefix: str) -> None:
    first = FakeEncoder("minilm-test", dim=DIM)
    async with RedisVectorStore(aioredis.Redis.from_url(redis_url), prefix=prefix) as store:
        before = await EventVectors(first, store=store).vectors(PHRASES)
    assert len(first.calls) == 1
    again = FakeEncoder("minilm-test", dim=DIM)
    client, sends = counting_client(redis_url)
    async with RedisVectorStore(client, prefix=prefix) as store:
        sends[0] = 0
        restarted = EventVectors(again, store=store)
        after = await restarted.vectors(PHRASES + PHRASES[:10])
        assert sends[0] == 1  # one read, nothing to write
    assert again.calls == []
    assert (restarted.process_hits, restarted.store_hits, restarted.encoded) == (0, 200, 0)
    np.testing.assert_array_equal(after[:200], before)


async def test_another_encoder_id_does_not_see_them(redis_url: str, prefix: str) -> None:
    async with RedisVectorStore(aioredis.Redis.from_url(redis_url), prefix=prefix) as store:
        await EventVectors(FakeEncoder("enc-a", dim=DIM), store=store).vectors(PHRASES[:3])
        other = FakeEncoder("enc-b", dim=DIM)
        await EventVectors(other, store=store).vectors(PHRASES[:3])
    assert other.calls == [PHRASES[:3]]


async def test_from_settings_uses_the_prefix_and_a_down_redis_is_a_store_error(
        redis_url: str, prefix: str, admin: aioredis.Redis) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix)
    async with RedisVectorStore.from_settings(settings) as store:
        await store.put_many({vector_key("enc", "x"): b"\x01\x02"}, ttl_s=5)
    assert await admin.get(f"{prefix}:vec:enc:{phrase_digest('x')}") == b"\x01\x02"
    down = RedisVectorStore(aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"),
                            prefix=prefix)
    with pytest.raises(StoreError) as info:
        await down.get_many([vector_key("enc", "x")])
    assert info.value.retriable
    with pytest.raises(StoreError):
        await down.put_many({vector_key("enc", "x"): b"\x01\x02"}, ttl_s=5)
    await down.stop()


@pytest.fixture
async def cluster_vectors(cluster_ports: list[int], monkeypatch: pytest.MonkeyPatch
                          ) -> AsyncIterator[tuple[RedisVectorStore, list]]:
    """A store on the cluster and a count of requests to any node (the async RedisCluster
    takes no connection_class, so Connection is patched for this test only)."""
    sends = count_all_sends(monkeypatch)
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    async with RedisVectorStore(client, prefix=f"c{uuid.uuid4().hex[:10]}") as store:
        yield store, sends


async def test_on_the_cluster_keys_in_many_slots_one_pipeline_per_node(
        cluster_vectors: tuple[RedisVectorStore, list], cluster_ports: list[int]) -> None:
    store, sends = cluster_vectors
    nodes = len(cluster_ports)
    enc = FakeEncoder("minilm-test", dim=DIM)
    keys = [vector_key(enc.encoder_id, p) for p in PHRASES]
    assert len({store.client.keyslot(store.redis_key(k)) for k in keys}) > nodes
    await store.get_many(keys)  # connects to every node (the handshakes are sends too)
    sends[0] = 0
    before = await EventVectors(enc, store=store, ttl_s=600).vectors(PHRASES)
    assert sends[0] <= 2 * nodes  # one read and one write, each one pipeline per node
    assert all(0 < t <= 600_000 for t in [await store.client.pttl(store.redis_key(k))
                                          for k in keys[:5]])
    again = FakeEncoder("minilm-test", dim=DIM)
    sends[0] = 0
    after = await EventVectors(again, store=store).vectors(PHRASES)
    assert sends[0] <= nodes and again.calls == []
    np.testing.assert_array_equal(after, before)
    await store.client.delete(*(store.redis_key(k) for k in keys))


def test_from_settings_makes_a_cluster_client() -> None:
    store = RedisVectorStore.from_settings(load_settings(), cluster=True)
    assert isinstance(store.client, RedisCluster)
