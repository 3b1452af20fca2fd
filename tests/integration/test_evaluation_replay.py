"""worker.kafka.reader and worker.evaluation.replay against the real (Tansu) broker.

Messages carry explicit producer timestamps (CreateTime) spread over 3 partitions; a middle
time range must come back exactly, with no consumer group created and no committed offset
touched, and ``republish`` must copy the range with its keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.errors import ConfigError
from worker.evaluation.replay import republish
from worker.kafka.admin import ensure_topics
from worker.kafka.reader import ReplayRecord, read_topic_range

BASE_MS = 1_700_000_000_000
N = 30  # message i: partition i % 3, timestamp BASE_MS + i * 1000, key u{i % 5}


def _message(i: int) -> ReplayRecord:
    return ReplayRecord(f"u{i % 5}".encode(), f'{{"i": {i}}}'.encode(), BASE_MS + i * 1000,
                        i % 3, i // 3)


async def _produce(bootstrap: str, topic: str, records: list[ReplayRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for r in records:  # one at a time: offsets within a partition follow i
            await (await producer.send(topic, key=r.key, value=r.value, partition=r.partition,
                                       timestamp_ms=r.timestamp_ms))
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, **kwargs) -> list[ReplayRecord]:
    return [r async for r in read_topic_range([bootstrap], topic, **kwargs)]


async def _groups(bootstrap: str) -> list:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(str(g) for g in await admin.list_consumer_groups())
    finally:
        await admin.close()


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        await consumer.stop()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"replay-{uuid.uuid4().hex[:8]}"
    await ensure_topics([kafka_bootstrap], [name], partitions=3)
    await _produce(kafka_bootstrap, name, [_message(i) for i in range(N)])
    return name


def _key(r: ReplayRecord) -> tuple[int, int]:
    return (r.partition, r.offset)


@pytest.mark.parametrize("seek", ["auto", "scan"])
async def test_reads_exactly_a_middle_time_range(kafka_bootstrap: str, topic: str,
                                                  seek: str) -> None:
    got = await _read(kafka_bootstrap, topic, from_ms=BASE_MS + 10_000, to_ms=BASE_MS + 20_000,
                      seek=seek)
    assert sorted(got, key=_key) == sorted((_message(i) for i in range(10, 20)), key=_key)


async def test_open_bounds_and_empty_ranges(kafka_bootstrap: str, topic: str) -> None:
    every = sorted((_message(i) for i in range(N)), key=_key)
    assert sorted(await _read(kafka_bootstrap, topic, from_ms=None, to_ms=None), key=_key) == every
    since = await _read(kafka_bootstrap, topic, from_ms=BASE_MS + 25_500, to_ms=None)
    assert sorted(since, key=_key) == sorted((_message(i) for i in range(26, N)), key=_key)
    until = await _read(kafka_bootstrap, topic, from_ms=None, to_ms=BASE_MS + 2_000)  # exclusive
    assert sorted(until, key=_key) == [_message(0), _message(1)]
    assert await _read(kafka_bootstrap, topic, from_ms=BASE_MS + N * 1000, to_ms=None) == []
    assert await _read(kafka_bootstrap, topic, from_ms=0, to_ms=BASE_MS) == []


async def test_ordered_merges_partitions_by_timestamp(kafka_bootstrap: str, topic: str) -> None:
    got = await _read(kafka_bootstrap, topic, from_ms=BASE_MS + 3_000, to_ms=BASE_MS + 27_000,
                      ordered=True, max_buffered=2)
    assert got == [_message(i) for i in range(3, 27)]


async def test_stops_at_end_offsets_captured_at_start(kafka_bootstrap: str, topic: str) -> None:
    seen: list[ReplayRecord] = []
    reader = read_topic_range([kafka_bootstrap], topic, from_ms=None, to_ms=None)
    async with contextlib.aclosing(reader):
        async for rec in reader:
            if not seen:  # newer messages arriving during the read are not part of it
                await _produce(kafka_bootstrap, topic, [
                    ReplayRecord(b"late", b"{}", BASE_MS + 5_500, p, 10) for p in range(3)])
            seen.append(rec)
    assert len(seen) == N and all(r.key != b"late" for r in seen)


async def test_never_creates_or_moves_a_consumer_group(kafka_bootstrap: str, topic: str) -> None:
    # a "worker" group with committed offsets on the topic
    group = f"iw-worker-{uuid.uuid4().hex[:6]}"
    worker = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                              enable_auto_commit=False)
    await worker.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        worker.assign(tps)
        await worker.commit({tp: 4 for tp in tps})
    finally:
        await worker.stop()
    groups_before = await _groups(kafka_bootstrap)
    committed_before = await _committed(kafka_bootstrap, group, topic)
    assert committed_before == {0: 4, 1: 4, 2: 4}

    assert len(await _read(kafka_bootstrap, topic, from_ms=BASE_MS + 10_000, to_ms=None)) == 20
    await republish([kafka_bootstrap], topic, f"{topic}-copy", from_ms=None, to_ms=None)

    assert await _groups(kafka_bootstrap) == groups_before
    assert await _committed(kafka_bootstrap, group, topic) == committed_before


async def test_refuses_group_settings_and_missing_topics(kafka_bootstrap: str, topic: str) -> None:
    with pytest.raises(ConfigError, match="group"):
        await _read(kafka_bootstrap, topic, from_ms=None, to_ms=None, group_id="iw")
    with pytest.raises(ConfigError, match="does not exist"):
        await _read(kafka_bootstrap, f"missing-{uuid.uuid4().hex[:6]}", from_ms=None, to_ms=None)
    with pytest.raises(ConfigError, match="before"):
        await _read(kafka_bootstrap, topic, from_ms=BASE_MS, to_ms=BASE_MS)


async def test_republish_copies_the_range_with_keys(kafka_bootstrap: str, topic: str) -> None:
    target = f"{topic}-shadow"
    await ensure_topics([kafka_bootstrap], [target], partitions=2)
    report = await republish([kafka_bootstrap], topic, target, from_ms=BASE_MS + 10_000,
                             to_ms=BASE_MS + 20_000, speed=None)
    assert report.messages == 10
    assert (report.first_timestamp_ms, report.last_timestamp_ms) is not None
    copied = await _read(kafka_bootstrap, target, from_ms=None, to_ms=None)
    expected = [_message(i) for i in range(10, 20)]
    assert sorted((r.key, r.value) for r in copied) == sorted((r.key, r.value) for r in expected)
    # same key -> same target partition; republish sends in timestamp order, so each key's
    # records keep their order (here a key's records come from several source partitions)
    by_key: dict[bytes, set[int]] = {}
    for r in copied:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for key in by_key:
        assert [r.value for r in sorted(copied, key=_key) if r.key == key] == \
            [r.value for r in expected if r.key == key]
    # new timestamps by default (a shadow worker measures latency from them)
    now = time.time() * 1000
    assert all(abs(r.timestamp_ms - now) < 600_000 for r in copied)


async def test_republish_paced_and_keeping_timestamps(kafka_bootstrap: str, topic: str) -> None:
    target = f"{topic}-paced"
    await ensure_topics([kafka_bootstrap], [target], partitions=3)
    started = time.monotonic()
    # 6 records spanning 5 s of timestamps at speed 10 -> about 0.5 s
    report = await republish([kafka_bootstrap], topic, target, from_ms=BASE_MS + 4_000,
                             to_ms=BASE_MS + 10_000, speed=10.0, keep_timestamps=True)
    elapsed = time.monotonic() - started
    assert report.messages == 6
    assert report.seconds >= 0.45 and elapsed < 10
    copied = await _read(kafka_bootstrap, target, from_ms=None, to_ms=None, ordered=True)
    assert [r.timestamp_ms for r in copied] == [BASE_MS + i * 1000 for i in range(4, 10)]
    assert [r.value for r in copied] == [_message(i).value for i in range(4, 10)]


async def test_correct_when_the_time_index_disagrees_with_record_timestamps(
        kafka_bootstrap: str) -> None:
    """Records stamped later than they were appended, then a gap, then records stamped
    earlier than they were appended. A broker that indexes append time (Tansu) points
    ``from_ms`` past the first group; the reader must notice this and still find them."""
    name = f"replay-skew-{uuid.uuid4().hex[:8]}"
    await ensure_topics([kafka_bootstrap], [name], partitions=1)
    now = int(time.time() * 1000)
    early = [ReplayRecord(b"a", f"early{i}".encode(), now + 60_000 + i, 0, i) for i in range(3)]
    await _produce(kafka_bootstrap, name, early)
    await asyncio.sleep(1.2)
    from_ms = int(time.time() * 1000) - 500  # after the first appends, before the next ones
    await asyncio.sleep(0.6)
    late = [ReplayRecord(b"b", f"late{i}".encode(), now - 60_000 + i, 0, 3 + i) for i in range(3)]
    await _produce(kafka_bootstrap, name, late)

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(name, 0)
        hint = (await consumer.offsets_for_times({tp: from_ms}))[tp]
    finally:
        await consumer.stop()

    got = await _read(kafka_bootstrap, name, from_ms=from_ms, to_ms=None)
    assert got == early  # by record timestamp only the "early" group is at or after from_ms
    # What the broker said, for the record: Kafka (CreateTime index) answers offset 0; Tansu
    # (append-time index) answers offset 3 with its own append time.
    assert hint is not None and hint.offset in (0, 3)
