"""worker.evaluation.outcomes against the real (Tansu) broker: outcome records produced to a
topic with aiokafka (keyed by user, with redeliveries and a bad record, Kafka timestamps far
from event time) come back selected by event time, deduplicated and counted."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.outcomes import BASE_MS, synthetic
from worker.errors import ConfigError
from worker.evaluation.outcomes import compare_outcomes, outcomes_from_topic
from worker.kafka.admin import ensure_topics

N = 300


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"outcomes-{uuid.uuid4().hex[:8]}"
    await ensure_topics([kafka_bootstrap], [name], partitions=3)
    records = synthetic(N, users=40, shadow="better")
    redelivered = records[10:20]  # a batch sent twice, as after a worker restart
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        now = int(time.time() * 1000)  # produced now: Kafka time is years after event time
        for r in [*records, *redelivered]:
            await producer.send(name, key=r["user_id"].encode(), value=orjson.dumps(r),
                                timestamp_ms=now)
        await producer.send(name, key=b"u1", value=b'{"score_id": "broken"}', timestamp_ms=now)
        await producer.flush()
    finally:
        await producer.stop()
    return name


async def test_reads_a_topic_by_event_time_with_dedupe(kafka_bootstrap: str, topic: str) -> None:
    records = synthetic(N, users=40, shadow="better")
    every = await outcomes_from_topic([kafka_bootstrap], topic, from_ms=None, to_ms=None)
    assert every.read == N + 11 and every.invalid == 1 and every.duplicates == 10
    assert every.conflicting == 0
    assert sorted(r["score_id"] for r in every.records) == sorted(r["score_id"] for r in records)
    assert every.invalid_examples[0].startswith("partition ")

    part = await outcomes_from_topic([kafka_bootstrap], topic, from_ms=BASE_MS + 100_000,
                                     to_ms=BASE_MS + 200_000)
    assert sorted(r["score_id"] for r in part.records) == sorted(
        f"s{i}" for i in range(100, 200))
    assert part.duplicates == 0 and part.out_of_range == N + 10 - 100
    (pair,) = compare_outcomes(part.records, rounds=100).pairs
    assert pair.n == 100


async def test_a_missing_topic_is_a_config_error(kafka_bootstrap: str) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await outcomes_from_topic([kafka_bootstrap], f"nope-{uuid.uuid4().hex[:8]}",
                                  from_ms=None, to_ms=None)
