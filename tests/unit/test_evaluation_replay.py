"""worker.evaluation.replay with a fake consumer and producer: time parsing, the seek logic
(a trusted Kafka-like time index, a wrong one, none), ordering, ends, pacing, errors."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from worker.errors import ConfigError, ServiceUnavailable
from worker.evaluation.replay import ReplayRecord, parse_time, read_topic_range, republish

# -- parse_time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
        ("2023-11-14T17:13:20.5-05:00", 1_700_000_000_500),
        ("2023-11-14t22:13:20z", 1_700_000_000_000),
        ("2023-11-14 22:13:20+00:00", 1_700_000_000_000),
        ("1700000000000", 1_700_000_000_000),
        (" 1700000000000 ", 1_700_000_000_000),
        ("0", 0),
    ],
)
def test_parse_time_accepts_rfc3339_with_offset_and_epoch_ms(text: str, ms: int) -> None:
    assert parse_time(text) == ms


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2023-11-14T22:13:20", "offset such as Z"),
        ("2023-11-14", "offset such as Z"),
        ("1700000000", "epoch seconds"),
        ("yesterday", "neither RFC 3339"),
        ("", "expected RFC 3339"),
        ("-5", "neither"),
        ("2023-13-14T22:13:20Z", "month"),
        ("2023-11-14T22:13:20+25:00", "2023-11-14T22:13:20"),
        ("1969-12-31T23:59:59Z", "before 1970"),
    ],
)
def test_parse_time_rejects_with_a_clear_config_error(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_time(text)


# -- a fake consumer with Kafka semantics ----------------------------------------------------


class FakeConsumer:
    """In-memory partitions of (key, value, timestamp). ``index`` is how offsets_for_times
    answers: "kafka" (first record stamped >= target, by record timestamp), or a dict
    partition -> OffsetAndTimestamp | None to play a broker with a wrong index."""

    instances: list[FakeConsumer] = []

    def __init__(self, data: dict[int, list[tuple[bytes, bytes, int]]], *, index="kafka",
                 fetch_size: int = 2, list_end_lag: int = 0, **kwargs) -> None:
        self.data = data
        self.index = index
        self.fetch_size = fetch_size
        self.list_end_lag = list_end_lag  # ListOffsets answers this much too low (like Tansu)
        self.kwargs = kwargs
        self.assigned: list[TopicPartition] = []
        self.pos: dict[TopicPartition, int] = {}
        self.hw: dict[TopicPartition, int] = {}
        self.paused_tps: set[TopicPartition] = set()
        self.resumed: list[int] = []
        self.fetched: list[tuple[int, int]] = []  # (partition, offset) of every record handed out
        self.seeks: list[tuple[int, int]] = []
        self.stopped = False
        FakeConsumer.instances.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def partitions_for_topic(self, topic: str):
        return set(self.data) if topic == "t" else None

    async def topics(self):
        return {"t"}

    async def beginning_offsets(self, tps):
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps):
        return {tp: max(0, len(self.data[tp.partition]) - self.list_end_lag) for tp in tps}

    async def offsets_for_times(self, stamps):
        out = {}
        for tp, target in stamps.items():
            if self.index != "kafka":
                out[tp] = self.index.get(tp.partition)
                continue
            rows = self.data[tp.partition]
            out[tp] = next((OffsetAndTimestamp(o, ts) for o, (_, _, ts) in enumerate(rows)
                            if ts >= target), None)
        return out

    def assign(self, tps) -> None:
        self.assigned = list(tps)

    def seek(self, tp, offset) -> None:
        self.pos[tp] = offset
        self.seeks.append((tp.partition, offset))

    def pause(self, *tps) -> None:
        self.paused_tps.update(tps)

    def resume(self, *tps) -> None:
        self.paused_tps.difference_update(tps)
        self.resumed.extend(tp.partition for tp in tps)

    async def position(self, tp):
        return self.pos[tp]

    def highwater(self, tp):
        return self.hw.get(tp)

    def last_stable_offset(self, tp):
        return self.hw.get(tp)

    async def getmany(self, *tps, timeout_ms=0):
        await asyncio.sleep(0)
        out = {}
        for tp in tps:
            assert tp in self.assigned and tp not in self.paused_tps
            self.hw[tp] = len(self.data[tp.partition])
            start = self.pos[tp]
            rows = self.data[tp.partition][start:start + self.fetch_size]
            if rows:
                out[tp] = [SimpleNamespace(key=k, value=v, timestamp=ts, partition=tp.partition,
                                           offset=start + i)
                           for i, (k, v, ts) in enumerate(rows)]
                self.fetched.extend((tp.partition, start + i) for i in range(len(rows)))
                self.pos[tp] = start + len(rows)
        return out


def _data(n_per_partition: int = 6,
          partitions: int = 2) -> dict[int, list[tuple[bytes, bytes, int]]]:
    # partition p, offset o: timestamp 1000 * (o * partitions + p)
    return {p: [(f"k{p}".encode(), f"v{p}-{o}".encode(), 1000 * (o * partitions + p))
                for o in range(n_per_partition)] for p in range(partitions)}


def _factory(data, **kw):
    def make(**kwargs):
        return FakeConsumer(data, **kw, **kwargs)
    return make


async def _read(data, *, consumer_kw=None, **kwargs) -> tuple[list[ReplayRecord], FakeConsumer]:
    FakeConsumer.instances.clear()
    factory = _factory(data, **(consumer_kw or {}))
    got = [r async for r in read_topic_range(["x:1"], "t", consumer_factory=factory,
                                             **{"from_ms": None, "to_ms": None, **kwargs})]
    return got, FakeConsumer.instances[-1]


def _ts(records: list[ReplayRecord]) -> list[int]:
    return sorted(r.timestamp_ms for r in records)


# -- read_topic_range --------------------------------------------------------------------


async def test_consumer_never_uses_a_group_and_is_stopped() -> None:
    got, consumer = await _read(_data())
    assert len(got) == 12
    assert consumer.kwargs["group_id"] is None
    assert consumer.kwargs["enable_auto_commit"] is False
    assert consumer.stopped


async def test_trusted_time_index_skips_the_records_before_from() -> None:
    got, consumer = await _read(_data(), from_ms=6000, to_ms=None)
    assert _ts(got) == [6000, 7000, 8000, 9000, 10000, 11000]
    # partition 0 starts at offset 3 (ts 6000), partition 1 at offset 3 (ts 7000): no scan
    assert consumer.seeks == [(0, 3), (1, 3)]
    assert min(o for _, o in consumer.fetched) == 3


async def test_wrong_time_index_falls_back_to_a_scan() -> None:
    # the broker claims offset 4 (ts 8000 in partition 0), the record there is stamped 8000
    # but the claim says 6500: inconsistent -> scan partition 0 from 0
    wrong = {0: OffsetAndTimestamp(4, 6500), 1: OffsetAndTimestamp(3, 7000)}
    got, consumer = await _read(_data(), from_ms=6000, consumer_kw={"index": wrong})
    assert _ts(got) == [6000, 7000, 8000, 9000, 10000, 11000]
    assert (0, 0) in consumer.seeks  # fell back for partition 0
    assert (1, 0) not in consumer.seeks  # partition 1's answer was right


@pytest.mark.parametrize("answer", [OffsetAndTimestamp(0, -1), OffsetAndTimestamp(2, 10),
                                    OffsetAndTimestamp(99, 99_000)])
async def test_implausible_index_answers_mean_scan(answer) -> None:
    # timestamp before from_ms (Tansu says -1 for "later than every append"), or past the end
    index = {0: answer, 1: answer}
    got, consumer = await _read(_data(), from_ms=6000, consumer_kw={"index": index})
    assert _ts(got) == [6000, 7000, 8000, 9000, 10000, 11000]
    assert consumer.seeks == [(0, 0), (1, 0)]


async def test_none_from_the_index_means_nothing_in_that_partition() -> None:
    index = {0: None, 1: OffsetAndTimestamp(5, 11000)}
    got, consumer = await _read(_data(), from_ms=10500, consumer_kw={"index": index})
    assert _ts(got) == [11000]
    assert all(p == 1 for p, _ in consumer.fetched)


async def test_seek_scan_ignores_the_index() -> None:
    got, consumer = await _read(_data(), from_ms=6000, seek="scan",
                                consumer_kw={"index": {0: None, 1: None}})
    assert _ts(got) == [6000, 7000, 8000, 9000, 10000, 11000]


async def test_to_is_exclusive_and_partitions_stop_early() -> None:
    got, consumer = await _read(_data(20), from_ms=None, to_ms=4000)
    assert _ts(got) == [0, 1000, 2000, 3000]
    assert max(o for _, o in consumer.fetched) <= 3  # did not read to the end of 20 records


async def test_lateness_keeps_reading_for_out_of_order_timestamps() -> None:
    data = {0: [(b"k", b"a", 1000), (b"k", b"b", 5000), (b"k", b"c", 2000), (b"k", b"d", 9000)]}
    strict, _ = await _read(data, to_ms=4000, consumer_kw={"fetch_size": 1})
    assert [r.value for r in strict] == [b"a"]
    late, _ = await _read(data, to_ms=4000, lateness_ms=3000, consumer_kw={"fetch_size": 1})
    assert [r.value for r in late] == [b"a", b"c"]


async def test_end_comes_from_the_fetch_high_watermark_when_list_offsets_is_low() -> None:
    got, _ = await _read(_data(6), consumer_kw={"list_end_lag": 3})  # Tansu-like ListOffsets
    assert len(got) == 12


async def test_ordered_merge_with_a_small_buffer() -> None:
    data = {0: [(b"a", b"", t) for t in (1, 2, 3, 10, 11, 12, 13)],
            1: [(b"b", b"", t) for t in (4, 5, 6, 7, 8, 9)],
            2: []}
    got, consumer = await _read(data, ordered=True, max_buffered=1, consumer_kw={"fetch_size": 3})
    assert [r.timestamp_ms for r in got] == list(range(1, 14))
    assert consumer.resumed  # the buffer cap paused a partition that ran ahead, then resumed it


async def test_empty_topic_and_empty_partitions() -> None:
    got, _ = await _read({0: [], 1: []})
    assert got == []


async def test_idle_timeout_raises_service_unavailable() -> None:
    class Stuck(FakeConsumer):
        async def getmany(self, *tps, timeout_ms=0):
            await asyncio.sleep(0.01)
            return {}

    def make(**kwargs):
        return Stuck(_data(), **kwargs)

    with pytest.raises(ServiceUnavailable, match="no progress"):
        _ = [r async for r in read_topic_range(["x:1"], "t", from_ms=None, to_ms=None,
                                               consumer_factory=make, idle_timeout_s=0.1)]


async def test_early_exit_with_aclosing_stops_the_consumer() -> None:
    import contextlib

    FakeConsumer.instances.clear()
    reader = read_topic_range(["x:1"], "t", from_ms=None, to_ms=None,
                              consumer_factory=_factory(_data()))
    async with contextlib.aclosing(reader):
        async for _ in reader:
            break
    assert FakeConsumer.instances[-1].stopped


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"from_ms": 5, "to_ms": 5}, "before"),
        ({"from_ms": -1}, "non-negative"),
        ({"to_ms": 1.5}, "non-negative"),
        ({"seek": "index"}, "seek"),
        ({"group_id": "worker"}, "group"),
        ({"enable_auto_commit": True}, "group"),
        ({"lateness_ms": -1}, "lateness"),
    ],
)
async def test_read_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        await _read(_data(), **kwargs)


async def test_missing_topic_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _ = [r async for r in read_topic_range(["x:1"], "nope", from_ms=None, to_ms=None,
                                               consumer_factory=_factory(_data()))]


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
