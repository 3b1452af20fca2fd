"""Read a topic by time range, with a consumer of its own.

The reader has its own consumer. It has no group id, so it never joins, commits or even
creates a consumer group (the worker's committed offsets are never touched). It assigns
every partition by hand and stops once each partition reaches the end offset captured when
the read started. Messages produced after that are not read, so a read always ends.

Time is the Kafka record timestamp (``CreateTime`` as the producer set it, or
``LogAppendTime``), in epoch milliseconds. The range is half-open:
``from_ms <= timestamp < to_ms``. Either bound may be None.

Finding the start: with ``seek="auto"`` the reader asks the broker's time index
(``offsets_for_times``) where ``from_ms`` starts in each partition, seeks there and trusts
the answer only if the first record fetched is the one the broker named (same offset, same
timestamp). Otherwise it scans that partition from its beginning offset, dropping records
before ``from_ms``. This matters on Tansu (0.6, the embedded broker). Its ListOffsets looks
up the broker's own append time, not the record's CreateTime: it returns the append time
as the timestamp, and a wrong offset when the target is later than every append. Kafka
answers from the record timestamps, so there the seek is kept. ``seek="scan"`` always scans.

End offsets: ``end_offsets()`` (ListOffsets "latest") is only provisional. Tansu 0.6
answers with the base offset of the partition's last record batch + 1, which is too low
when that batch holds several records. Each partition's end is therefore fixed at
``max(end_offsets, high watermark)``, with the high watermark taken from the first fetch
response. That is still the end as of the start of the read, to within one fetch round
trip. With ``isolation_level="read_committed"`` the last stable offset is used instead.

Finding the end: a partition also stops at its first record stamped at or after
``to_ms + lateness_ms``. Producers that set their own timestamps can write them out of
order within a partition. Raise ``lateness_ms`` for such topics, or leave ``to_ms`` None
and filter yourself; otherwise late-stamped records after that point are missed.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from worker.errors import ConfigError, ServiceUnavailable
from worker.events.parse import epoch_ms

__all__ = ["ReplayRecord", "bootstrap_servers", "check_range", "parse_time", "read_topic_range",
           "start_client"]

log = logging.getLogger(__name__)

_MIN_EPOCH_MS = 100_000_000_000  # 1973-03-03: smaller numbers are almost surely seconds
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")
_FORBIDDEN_OPTS = ("group_id", "enable_auto_commit", "auto_offset_reset", "group_instance_id")


class ReplayRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    partition: int
    offset: int


def parse_time(text: str) -> int:
    """``--from-time``/``--to-time`` -> epoch milliseconds.

    Accepts RFC 3339 with ``Z`` or an explicit offset (``2024-05-01T12:00:00+02:00``,
    fractions allowed) or an integer of epoch milliseconds (``1714557600000``). Anything
    else, a time without an offset included, raises :class:`ConfigError` saying why.
    """
    raw = text.strip() if isinstance(text, str) else text
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"time {text!r}: expected RFC 3339 with an offset or epoch milliseconds")
    if re.fullmatch(r"\d+", raw):
        ms = int(raw)
        if 0 < ms < _MIN_EPOCH_MS:
            raise ConfigError(
                f"time {raw!r} looks like epoch seconds; give epoch milliseconds "
                f"({ms * 1000}) or RFC 3339 such as 2024-05-01T12:00:00Z"
            )
        return ms
    if not _RFC3339.fullmatch(raw):
        hint = " (an offset such as Z or +02:00 is required)" if _NAIVE.fullmatch(raw) else ""
        raise ConfigError(
            f"time {raw!r} is neither RFC 3339 with an offset (2024-05-01T12:00:00Z, "
            f"2024-05-01T14:00:00+02:00) nor epoch milliseconds{hint}"
        )
    iso = raw[:10] + "T" + raw[11:]
    try:
        dt = datetime.fromisoformat(iso[:-1] + "+00:00" if iso[-1] in "Zz" else iso)
    except ValueError as exc:
        raise ConfigError(f"time {raw!r}: {exc}") from None
    ms = epoch_ms(dt)
    if ms < 0:
        raise ConfigError(f"time {raw!r} is before 1970-01-01T00:00:00Z")
    return ms


async def read_topic_range(
    bootstrap: Sequence[str] | str, topic: str, *, from_ms: int | None, to_ms: int | None,
    seek: Literal["auto", "scan"] = "auto", ordered: bool = False, lateness_ms: int = 0,
    idle_timeout_s: float = 30.0, max_buffered: int = 10_000,
    consumer_factory: Callable[..., AIOKafkaConsumer] | None = None, **client_opts: Any,
) -> AsyncIterator[ReplayRecord]:
    """Yield every record of ``topic`` with ``from_ms <= timestamp < to_ms`` (see the module
    docstring), then stop.

    Records of one partition come in offset order. With ``ordered=True`` partitions are
    merged by ``(timestamp, partition, offset)``: at most ``max_buffered`` records per
    partition are held back while the others catch up. ``client_opts`` go to the consumer
    (connection and security settings). ``group_id`` and the other group settings are
    refused: this reader never uses a group. Raises :class:`ConfigError` for a bad range or
    a missing topic. Raises :class:`ServiceUnavailable` when nothing moves for
    ``idle_timeout_s`` before every partition has reached its end.

    This is an async generator. If you stop early, close it with ``contextlib.aclosing``
    so the consumer stops at once.
    """
    check_range(from_ms, to_ms)
    if seek not in ("auto", "scan"):
        raise ConfigError(f"seek must be 'auto' or 'scan', got {seek!r}")
    if lateness_ms < 0 or max_buffered < 1 or idle_timeout_s <= 0:
        raise ConfigError("lateness_ms must be >= 0, max_buffered >= 1 and idle_timeout_s > 0")
    forbidden = sorted(k for k in client_opts if k in _FORBIDDEN_OPTS)
    if forbidden:
        raise ConfigError(
            f"read_topic_range never uses a consumer group; drop {', '.join(forbidden)}")
    servers = bootstrap_servers(bootstrap)
    consumer = (consumer_factory or AIOKafkaConsumer)(
        bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", **client_opts)
    await start_client(consumer, servers)
    try:
        reader = _RangeReader(consumer, topic, from_ms=from_ms, to_ms=to_ms, seek=seek,
                              ordered=ordered, lateness_ms=lateness_ms,
                              idle_timeout_s=idle_timeout_s, max_buffered=max_buffered,
                              committed_only=client_opts.get("isolation_level") == "read_committed")
        async for record in reader.run():
            yield record
    finally:
        await consumer.stop()


def bootstrap_servers(bootstrap: Sequence[str] | str) -> list[str]:
    """``"a:9092,b:9092"`` or a list -> a list of ``host:port``."""
    return [s for s in bootstrap.split(",") if s] if isinstance(bootstrap, str) else list(bootstrap)


def check_range(from_ms: int | None, to_ms: int | None) -> None:
    """ConfigError unless each bound is None or epoch ms and ``from_ms < to_ms``."""
    for name, v in (("from_ms", from_ms), ("to_ms", to_ms)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"{name} must be a non-negative int of epoch milliseconds, got {v!r}")
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise ConfigError(f"empty time range: from ({from_ms}) must be before to ({to_ms})")


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, servers: list[str]) -> None:
    """Start an aiokafka client; an unreachable broker is ServiceUnavailable."""
    try:
        await client.start()
    except (KafkaConnectionError, OSError) as exc:
        await client.stop()
        raise ServiceUnavailable(f"Kafka at {','.join(servers)} not reachable ({exc!r})") from exc


class _RangeReader:
    """The state of one range read; ``run`` is the loop. One instance per read."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, *, from_ms: int | None,
                 to_ms: int | None, seek: str, ordered: bool, lateness_ms: int,
                 idle_timeout_s: float, max_buffered: int, committed_only: bool = False) -> None:
        self.c = consumer
        self.committed_only = committed_only
        self.topic = topic
        self.from_ms = from_ms
        self.to_ms = to_ms
        self.stop_ms = None if to_ms is None else to_ms + lateness_ms
        self.seek = seek
        self.ordered = ordered
        self.idle_timeout_s = idle_timeout_s
        self.max_buffered = max_buffered
        self.begin: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.end_fixed: set[TopicPartition] = set()  # end confirmed by a fetch response
        self.verify: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (offset, timestamp)
        self.active: set[TopicPartition] = set()
        self.buffers: dict[TopicPartition, deque[ReplayRecord]] = {}
        self.paused: set[TopicPartition] = set()

    async def run(self) -> AsyncIterator[ReplayRecord]:
        tps = await self._partitions()
        self.begin = await self.c.beginning_offsets(tps)
        self.end = await self.c.end_offsets(tps)
        self.active = {tp for tp in tps if self.end[tp] > self.begin[tp]}
        start = {tp: self.begin[tp] for tp in self.active}
        if self.from_ms is not None and self.seek == "auto" and self.active:
            await self._seek_by_time(start)
        log.info("reading %s [%s, %s): partitions %s from offsets %s (ListOffsets end %s, "
                 "fixed at the first fetch)", self.topic, self.from_ms, self.to_ms,
                 sorted(tp.partition for tp in self.active),
                 {tp.partition: start[tp] for tp in self.active},
                 {tp.partition: self.end[tp] for tp in self.active})
        if not self.active:
            return
        self.c.assign(sorted(self.active, key=lambda tp: tp.partition))
        for tp in sorted(self.active):  # a fixed order, whatever the hash seed
            self.c.seek(tp, start[tp])
        self.buffers = {tp: deque() for tp in self.active}
        last_progress = time.monotonic()
        while self.active:
            fetchable = [tp for tp in self.active if tp not in self.paused]
            if fetchable:
                batch = await self.c.getmany(*fetchable, timeout_ms=200)
            else:  # not expected (see _ready), but never spin
                batch = {}
                await asyncio.sleep(0.05)
            progressed = False
            self._fix_ends()
            for tp, msgs in batch.items():
                progressed |= self._take(tp, msgs)
            for tp in list(self.active):
                if tp in self.end_fixed and await self.c.position(tp) >= self.end[tp]:
                    if tp in self.verify:  # the seek offset's record is gone: cannot verify it
                        self._fall_back(tp, "no record at the time index's offset")
                    else:
                        self._finish(tp)
                    progressed = True
            for rec in self._ready():
                yield rec
            if progressed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.idle_timeout_s:
                raise ServiceUnavailable(
                    f"reading {self.topic}: no progress for {self.idle_timeout_s:.0f}s with "
                    f"partitions {sorted(tp.partition for tp in self.active)} still short of "
                    "their end offsets"
                )
        for rec in self._ready(final=True):
            yield rec

    async def _partitions(self) -> list[TopicPartition]:
        deadline = time.monotonic() + 10.0
        while True:
            parts = self.c.partitions_for_topic(self.topic)
            if parts:
                return [TopicPartition(self.topic, p) for p in sorted(parts)]
            if self.topic not in await self.c.topics():
                raise ConfigError(f"topic {self.topic!r} does not exist")
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"no partition metadata for topic {self.topic!r}")
            await asyncio.sleep(0.2)

    async def _seek_by_time(self, start: dict[TopicPartition, int]) -> None:
        found = await self.c.offsets_for_times(dict.fromkeys(self.active, self.from_ms))
        for tp in sorted(self.active):
            oat = found.get(tp)
            if oat is None:  # the broker says no record is stamped at or after from_ms
                log.debug("%s: nothing at or after %d", tp, self.from_ms)
                self.active.discard(tp)
                start.pop(tp)
            elif oat.timestamp is None or oat.timestamp < self.from_ms:
                log.info("%s: time index answered offset %d with timestamp %s < %d; scanning from "
                         "the beginning offset %d instead", tp, oat.offset, oat.timestamp,
                         self.from_ms, self.begin[tp])
            elif oat.offset >= self.end[tp]:
                # Kafka: nothing in range, and the index names a record appended since the
                # start. The end offset is not fixed yet, so scanning is the safe choice.
                log.info("%s: time index answered offset %d at or past the end offset %d; "
                         "scanning from the beginning offset %d", tp, oat.offset, self.end[tp],
                         self.begin[tp])
            elif oat.offset > self.begin[tp]:
                start[tp] = oat.offset
                self.verify[tp] = (oat.offset, oat.timestamp)

    def _fix_ends(self) -> None:
        """Fix each partition's end at its first fetch response (see the module docstring)."""
        for tp in self.active - self.end_fixed:
            mark = self.c.last_stable_offset(tp) if self.committed_only else self.c.highwater(tp)
            if mark is not None:
                if mark > self.end[tp]:
                    log.debug("%s: end offset %d from the fetch response, %d from ListOffsets",
                              tp, mark, self.end[tp])
                self.end[tp] = max(self.end[tp], mark)
                self.end_fixed.add(tp)

    def _take(self, tp: TopicPartition, msgs: list) -> bool:
        """Handle one partition's fetched records; True when anything moved."""
        if tp not in self.active or not msgs:
            return False
        buf = self.buffers[tp]
        for m in msgs:
            if tp in self.verify:
                expected = self.verify.pop(tp)
                if (m.offset, m.timestamp) != expected:
                    self._fall_back(tp, f"first record is (offset {m.offset}, timestamp "
                                        f"{m.timestamp}), the index said {expected}")
                    return True
            past_end = tp in self.end_fixed and m.offset >= self.end[tp]
            if past_end or (self.stop_ms is not None and m.timestamp >= self.stop_ms):
                self._finish(tp)
                break
            if (self.from_ms is None or m.timestamp >= self.from_ms) and (
                    self.to_ms is None or m.timestamp < self.to_ms):
                buf.append(ReplayRecord(m.key, m.value, m.timestamp, m.partition, m.offset))
        full = self.ordered and len(buf) >= self.max_buffered
        if full and tp in self.active and tp not in self.paused:
            self.c.pause(tp)
            self.paused.add(tp)
        return True

    def _fall_back(self, tp: TopicPartition, why: str) -> None:
        log.info("%s: broker time index not consistent with record timestamps (%s); scanning from "
                 "the beginning offset %d", tp, why, self.begin[tp])
        self.verify.pop(tp, None)
        self.buffers[tp].clear()
        self.c.seek(tp, self.begin[tp])

    def _finish(self, tp: TopicPartition) -> None:
        self.active.discard(tp)
        self.verify.pop(tp, None)
        self.c.pause(tp)
        self.paused.discard(tp)

    def _ready(self, *, final: bool = False) -> list[ReplayRecord]:
        """Records that may be handed out now, and resume partitions drained below the cap."""
        if not self.ordered:
            out = [rec for buf in self.buffers.values() for rec in buf]
            for buf in self.buffers.values():
                buf.clear()
            return out
        out = []
        # The smallest head may go out while every partition still reading has a record
        # buffered: a partition's later records are not stamped earlier (out-of-order
        # producer timestamps aside), so nothing can still arrive ahead of it.
        if final or all(self.buffers[tp] for tp in self.active):
            heap = [(buf[0].timestamp_ms, buf[0].partition, tp)
                    for tp, buf in self.buffers.items() if buf]
            heapq.heapify(heap)
            while heap:
                _, _, tp = heapq.heappop(heap)
                buf = self.buffers[tp]
                out.append(buf.popleft())
                if buf:
                    heapq.heappush(heap, (buf[0].timestamp_ms, buf[0].partition, tp))
                elif tp in self.active and not final:
                    break
        for tp in list(self.paused):
            if len(self.buffers[tp]) < self.max_buffered:
                self.c.resume(tp)
                self.paused.discard(tp)
        return out
