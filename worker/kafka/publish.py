"""Publish a file of events to a topic, keyed by user, optionally at a fixed rate.

Each record's Kafka timestamp is the time of publishing, or, with ``event_time``, the event's
own ``ts``: a file replayed as it happened, so a time-range read of the topic
(``evaluate --topic T --from-time ... --to-time ...``) selects by event time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from worker.events.adapters import read_jsonl, read_rees46, user_key
from worker.events.parse import epoch_ms


@dataclass(frozen=True, slots=True)
class PublishReport:
    messages: int
    seconds: float
    without_event_time: int = 0  # with event_time: records whose value has no valid ts

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")


def file_messages(path: Path, fmt: str) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) pairs of a file: ``jsonl`` lines as they are, ``rees46`` rows mapped."""
    if fmt == "jsonl":
        for line in read_jsonl(path):
            yield user_key(line), line
    elif fmt == "rees46":
        for event in read_rees46(path):
            yield event["user_id"].encode(), orjson.dumps(event)
    else:  # guarded by the CLI's choices
        raise ValueError(f"unknown format {fmt!r}")


def event_time_ms(value: bytes) -> int | None:
    """The event's own ``ts`` in epoch milliseconds, or None when ``value`` is not a JSON object
    with a ``ts`` of RFC 3339 with an offset or of integer epoch milliseconds."""
    try:
        ts = orjson.loads(value).get("ts")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if isinstance(ts, int) and not isinstance(ts, bool):
        return ts if ts >= 0 else None
    if isinstance(ts, str):
        try:
            return epoch_ms(datetime.fromisoformat(ts))
        except ValueError:  # not ISO 8601, or no offset
            return None
    return None


async def sleep_until(due_monotonic: float) -> None:
    """Pace a sender on the monotonic clock."""
    delay = due_monotonic - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class Deliveries:
    """Delivery futures of sent messages, awaited in bounded chunks so memory stays flat."""

    def __init__(self, limit: int = 10_000) -> None:
        self._pending: list[asyncio.Future] = []
        self._limit = limit

    async def add(self, future: asyncio.Future) -> None:
        self._pending.append(future)
        if len(self._pending) >= self._limit:
            await self._wait()

    async def finish(self, producer: AIOKafkaProducer) -> None:
        """Flush the producer and wait for every delivery (raises the first failure)."""
        await producer.flush()
        await self._wait()

    async def _wait(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def publish(producer: AIOKafkaProducer, topic: str,
                  messages: Iterable[tuple[bytes | None, bytes]], *, rate: float | None = None,
                  event_time: bool = False) -> PublishReport:
    """Send every message; with ``rate`` (messages/s) pace them on a monotonic clock.

    With ``event_time`` each record's Kafka timestamp is the event's own ``ts``
    (:func:`event_time_ms`); a value without a valid one keeps the time of publishing, and
    is counted in the report. Otherwise every record is stamped with the time of publishing.
    """
    start = time.monotonic()
    n = missing = 0
    deliveries = Deliveries()
    for key, value in messages:
        if rate:
            await sleep_until(start + n / rate)
        timestamp_ms = event_time_ms(value) if event_time else None
        if event_time and timestamp_ms is None:
            missing += 1
        await deliveries.add(await producer.send(topic, value=value, key=key,
                                                 timestamp_ms=timestamp_ms))
        n += 1
    await deliveries.finish(producer)
    return PublishReport(n, time.monotonic() - start, missing)
