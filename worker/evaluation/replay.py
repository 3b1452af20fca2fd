"""Replays of a topic's time range for evaluation: as events to score, or re-published to
another topic for a shadow worker.

Both read the range with :func:`worker.kafka.reader.read_topic_range` (its own consumer,
never the worker's group; the range is on Kafka record timestamps).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.errors import BadEvent, ConfigError
from worker.events import parse_event
from worker.features.window import event_time_key
from worker.kafka.publish import Deliveries, sleep_until
from worker.kafka.reader import bootstrap_servers, check_range, read_topic_range, start_client

__all__ = ["ReplayReport", "events_from_topic", "republish"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    messages: int
    seconds: float
    first_timestamp_ms: int | None
    last_timestamp_ms: int | None


async def events_from_topic(bootstrap: Sequence[str] | str, topic: str, *, from_ms: int | None,
                            to_ms: int | None, max_event_bytes: int,
                            **client_opts: Any) -> tuple[list[dict], dict[str, int]]:
    """The valid events of a topic range in event-time order, and the rejected ones counted
    by dead-letter reason. An ``event_id`` seen again is left out (first one wins)."""
    events: list[dict] = []
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    records = read_topic_range(bootstrap, topic, from_ms=from_ms, to_ms=to_ms, **client_opts)
    async for rec in records:
        try:
            event = parse_event(rec.value, max_bytes=max_event_bytes)
        except BadEvent as exc:
            rejected[exc.reason] += 1
            continue
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            events.append(event)
    events.sort(key=event_time_key)
    return events, dict(rejected)


async def republish(
    bootstrap: Sequence[str] | str, source_topic: str, target_topic: str, *,
    from_ms: int | None, to_ms: int | None, speed: float | None = None,
    keep_timestamps: bool = False, seek: Literal["auto", "scan"] = "auto",
    lateness_ms: int = 0, idle_timeout_s: float = 30.0,
    consumer_factory: Callable[..., AIOKafkaConsumer] | None = None,
    producer_factory: Callable[..., AIOKafkaProducer] | None = None, **client_opts: Any,
) -> ReplayReport:
    """Re-publish the time range of ``source_topic`` to ``target_topic`` with the same keys
    and values, for shadow-testing a model on recorded traffic.

    Records go out in timestamp order, partitions merged (so the copy interleaves users as
    the original did). With ``speed`` each is due ``(timestamp - first timestamp) / speed``
    after the first is sent: 1.0 keeps real time, 10.0 is ten times faster. ``None`` sends
    as fast as possible.
    Records get a new timestamp (now) unless ``keep_timestamps``: a shadow worker measures
    latency from the record timestamp. The target topic must exist, or the broker must
    create it on its own; call ``worker.kafka.admin.ensure_topics`` first. ``client_opts``
    (connection and security settings) go to both clients. Headers are not copied.
    """
    if source_topic == target_topic:
        raise ConfigError(f"republish target must differ from the source topic {source_topic!r}")
    if speed is not None and not (
            isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise ConfigError(
            f"speed must be a positive number (or None for as fast as possible), got {speed!r}")
    check_range(from_ms, to_ms)
    servers = bootstrap_servers(bootstrap)
    producer = (producer_factory or AIOKafkaProducer)(
        bootstrap_servers=servers, **{"linger_ms": 5, **client_opts})
    await start_client(producer, servers)
    n = 0
    first_ts = last_ts = None
    started = time.monotonic()
    deliveries = Deliveries()
    try:
        records = read_topic_range(
            bootstrap, source_topic, from_ms=from_ms, to_ms=to_ms, seek=seek,
            ordered=True, lateness_ms=lateness_ms, idle_timeout_s=idle_timeout_s,
            consumer_factory=consumer_factory, **client_opts)
        async with contextlib.aclosing(records):
            async for rec in records:
                if first_ts is None:
                    first_ts, started = rec.timestamp_ms, time.monotonic()
                elif speed is not None:
                    await sleep_until(started + (rec.timestamp_ms - first_ts) / 1000.0 / speed)
                last_ts = rec.timestamp_ms
                await deliveries.add(await producer.send(
                    target_topic, value=rec.value, key=rec.key,
                    timestamp_ms=rec.timestamp_ms if keep_timestamps else None))
                n += 1
        await deliveries.finish(producer)
    finally:
        await producer.stop()
    report = ReplayReport(n, time.monotonic() - started, first_ts, last_ts)
    log.info("republished %d records from %s to %s in %.1fs", n, source_topic, target_topic,
             report.seconds)
    return report
