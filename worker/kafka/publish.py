"""Publish a file of events to a topic, keyed by user, optionally at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from worker.events.adapters import read_jsonl, read_rees46, user_key


@dataclass(frozen=True, slots=True)
class PublishReport:
    messages: int
    seconds: float

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


async def publish(producer: AIOKafkaProducer, topic: str, messages: Iterable[tuple[bytes | None, bytes]],
                  *, rate: float | None = None) -> PublishReport:
    """Send every message; with ``rate`` (messages/s) pace them on a monotonic clock."""
    start = time.monotonic()
    n = 0
    pending: list[asyncio.Future] = []
    for key, value in messages:
        if rate:
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pending.append(await producer.send(topic, value=value, key=key))
        n += 1
        if len(pending) >= 10_000:
            await asyncio.gather(*pending)
            pending.clear()
    await producer.flush()
    if pending:
        await asyncio.gather(*pending)
    return PublishReport(n, time.monotonic() - start)
