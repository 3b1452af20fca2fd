"""worker.kafka.reader with a fake consumer: time parsing, the seek logic (a trusted
Kafka-like time index, a wrong one, none), ordering, ends, errors."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import OffsetAndTimestamp

from tests.support.fake_kafka import FakeConsumer
from tests.support.fake_kafka import consumer_factory as _factory
from tests.support.fake_kafka import partitioned_data as _data
from worker.errors import ConfigError, ServiceUnavailable
from worker.kafka.reader import ReplayRecord, parse_time, read_topic_range

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
