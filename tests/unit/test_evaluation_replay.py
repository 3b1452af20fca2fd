"""worker.evaluation.replay with a fake consumer and producer: republishing a range in
order and paced, and the events of a topic range for evaluation."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from tests.support.fake_kafka import consumer_factory as _factory
from tests.support.fake_kafka import partitioned_data as _data
from worker.errors import ConfigError
from worker.evaluation.replay import events_from_topic, republish

# -- republish ---------------------------------------------------------------------------


class FakeProducer:
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.sent: list[tuple[float, str, bytes | None, bytes | None, int | None]] = []
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        pass

    async def send(self, topic, value=None, key=None, timestamp_ms=None):
        self.sent.append((time.monotonic(), topic, key, value, timestamp_ms))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def _republish(data, **kwargs) -> tuple[FakeProducer, object]:
    producers: list[FakeProducer] = []

    def make_producer(**kw):
        producers.append(FakeProducer(**kw))
        return producers[-1]

    report = await republish(["x:1"], "t", "shadow", consumer_factory=_factory(data),
                             producer_factory=make_producer,
                             **{"from_ms": None, "to_ms": None, **kwargs})
    return producers[0], report


async def test_republish_in_timestamp_order_with_keys_and_new_timestamps() -> None:
    producer, report = await _republish(_data(), from_ms=2000, to_ms=9000)
    assert report.messages == 7
    assert (report.first_timestamp_ms, report.last_timestamp_ms) == (2000, 8000)
    assert [(k, v) for _, _, k, v, _ in producer.sent] == [
        (b"k0", b"v0-1"), (b"k1", b"v1-1"), (b"k0", b"v0-2"), (b"k1", b"v1-2"),
        (b"k0", b"v0-3"), (b"k1", b"v1-3"), (b"k0", b"v0-4")]
    assert {topic for _, topic, *_ in producer.sent} == {"shadow"}
    assert all(ts is None for *_, ts in producer.sent)  # the producer stamps them now
    assert producer.stopped


async def test_republish_keep_timestamps() -> None:
    producer, _ = await _republish(_data(), to_ms=3000, keep_timestamps=True)
    assert [ts for *_, ts in producer.sent] == [0, 1000, 2000]


async def test_republish_paced_by_timestamps_over_speed() -> None:
    data = {0: [(b"k", b"", t) for t in (0, 1000, 3000)]}
    producer, report = await _republish(data, speed=10.0)  # due at 0, 0.1 s, 0.3 s
    t0 = producer.sent[0][0]
    offsets = [t - t0 for t, *_ in producer.sent]
    assert offsets[1] == pytest.approx(0.1, abs=0.05) and offsets[2] == pytest.approx(0.3, abs=0.05)
    assert report.seconds >= 0.29


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"speed": 0}, "speed"), ({"speed": -2.0}, "speed"), ({"speed": float("inf")}, "speed"),
     ({"from_ms": 9, "to_ms": 3}, "before")],
)
async def test_republish_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        await _republish(_data(), **kwargs)


async def test_republish_refuses_to_write_into_its_source() -> None:
    with pytest.raises(ConfigError, match="differ"):
        await republish(["x:1"], "t", "t", from_ms=None, to_ms=None)


# -- events_from_topic ---------------------------------------------------------------------


def _event(event_id: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "user_id": "u1", "event_type": "view",
                         "ts": ts, "product": {"id": "p1", "price": 1.0}})


async def test_events_from_topic_parses_dedupes_and_sorts_by_event_time() -> None:
    base = 1_700_000_000_000
    data = {0: [(b"u1", _event("b", base + 5), 1), (b"u1", b"{broken", 2)],
            1: [(b"u1", _event("a", base + 5), 3), (b"u1", _event("c", base), 4),
                (b"u1", _event("a", base + 5), 5)]}
    events, rejected = await events_from_topic(["x:1"], "t", from_ms=None, to_ms=None,
                                               max_event_bytes=65_536,
                                               consumer_factory=_factory(data))
    assert [e["event_id"] for e in events] == ["c", "a", "b"]  # ts, then event_id
    assert rejected == {"invalid_json": 1}
