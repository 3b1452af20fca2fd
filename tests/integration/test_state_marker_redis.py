"""StateMarker against real redis-servers started here: a flush and a restart without
persistence are reported as a loss of state, by every worker sharing the Redis; a restart with
AOF persistence is not. On a 3-node Redis Cluster the marker works on the node of its slot.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from worker.errors import StoreError
from worker.ops.stack import Process, start_redis
from worker.ops.state_marker import StateMarker
from worker.settings import load_settings
from worker.windows import KeyBuilder, RedisWindowStore

T0 = 1_700_000_000_000
AOF = ["--appendonly", "yes", "--appendfsync", "always"]  # always: nothing lost at SIGTERM either


class OwnRedis:
    """A redis-server on a fixed port and directory, so it can be restarted as the same one."""

    def __init__(self, workdir: Path, extra: list[str]) -> None:
        self.workdir, self.extra = workdir, extra
        self.proc: Process = start_redis(workdir=workdir, extra=extra)
        self.port = self.proc.port
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        self.proc.stop()  # SIGTERM: with persistence on, redis-server writes it out first
        self.proc = start_redis(self.port, workdir=self.workdir, extra=self.extra)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path, [])  # the default of start_redis: no RDB, no AOF
    yield server
    server.proc.stop()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path, AOF)
    yield server
    server.proc.stop()


async def stores(url: str, n: int) -> list[RedisWindowStore]:
    """``n`` workers' window stores on one Redis and key prefix."""
    settings = load_settings(redis_url=url, key_prefix="marker-test")
    out = [RedisWindowStore.from_settings(settings) for _ in range(n)]
    for s in out:
        await s.start()
    return out


async def check_when_up(marker: StateMarker, *, timeout_s: float = 10.0) -> bool:
    """``marker.check()`` once Redis answers again (a restarted server drops the connections)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await marker.check()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def window_of(store: RedisWindowStore, user: str) -> list[str]:
    return [e["event_id"] for e in (await store.append({user: []}))[user]]


@pytest.fixture
async def workers(own_redis: OwnRedis) -> AsyncIterator[list[tuple[RedisWindowStore, StateMarker]]]:
    two = await stores(own_redis.url, 2)
    markers = [StateMarker.for_store(s) for s in two]
    for m in markers:
        assert await m.check() is False
    yield list(zip(two, markers, strict=True))
    for s in two:
        await s.stop()


async def test_a_flush_is_one_loss_for_each_worker(own_redis, workers) -> None:
    (store, first), (_, second) = workers
    await store.append({"u1": [{"event_id": "a", "user_id": "u1", "event_type": "view",
                                "ts": T0}]})
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        await admin.flushall()
        assert await first.check() is True  # re-creates the marker
        assert await second.check() is True  # finds a marker, but not the epoch it saw
        assert (first.losses, second.losses) == (1, 1)
        assert await admin.get(first.key) == first.epoch.encode() == second.epoch.encode()
        assert [await first.check(), await second.check()] == [False, False]
        assert await window_of(store, "u1") == []
    finally:
        await admin.aclose()


async def test_a_restart_without_persistence_is_a_loss(own_redis, workers) -> None:
    (store, first), (_, second) = workers
    await store.append({"u1": [{"event_id": "a", "user_id": "u1", "event_type": "view",
                                "ts": T0}]})
    own_redis.restart()
    assert await check_when_up(second) is True
    assert await check_when_up(first) is True
    assert (first.losses, second.losses) == (1, 1)
    assert await window_of(store, "u1") == []  # the state really is gone


async def test_a_restart_with_aof_keeps_the_marker_and_is_no_loss(aof_redis) -> None:
    [store] = await stores(aof_redis.url, 1)
    marker = StateMarker.for_store(store)
    try:
        assert await marker.check() is False
        epoch = marker.epoch
        await store.append({"u1": [{"event_id": "a", "user_id": "u1", "event_type": "view",
                                    "ts": T0}]})
        aof_redis.restart()
        assert await check_when_up(marker) is False
        assert marker.epoch == epoch and marker.losses == 0
        assert await window_of(store, "u1") == ["a"]  # the state really was kept
    finally:
        await store.stop()


async def test_on_a_cluster_the_marker_lives_on_its_slot_and_a_flush_is_seen(
        cluster_ports: list[int]) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    store = RedisWindowStore(client, keys=KeyBuilder(f"c{uuid.uuid4().hex[:10]}"),
                             max_events=4, span_ms=1000, ttl_s=60)
    marker = StateMarker.for_store(store)
    try:
        assert await marker.check() is False
        node = client.get_node_from_key(marker.key)
        assert await client.get(marker.key) == marker.epoch.encode()
        await client.execute_command("FLUSHALL", target_nodes=node)
        assert await marker.check() is True and marker.losses == 1
    finally:
        await store.stop()
