"""Asyncio load generator: publish synthetic click events at a target rate or as fast as possible.

    python -m loadtest.loadgen --events 20000 [--rate 500] [--users 5000] [--zipf-s 1.1] \
        [--topic clickstream] [--bootstrap 127.0.0.1:9092]

Events come from :mod:`loadtest.gen` (Zipf users, REES46 products), keyed by ``user_id``.
Without ``--bootstrap`` it uses ``INTENT_KAFKA_BOOTSTRAP`` / ``INTENT_TOPIC_EVENTS`` like the
worker. ``publish`` records each event's publish time (wall clock, ms, taken just before the
producer's ``send``) and the last offset written per partition, which the bench uses to know
when a consumer group has committed everything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from loadtest.gen import load_catalog, make_events
from worker.kafka.publish import sleep_until

CHUNK = 5000  # delivery futures awaited in chunks, so memory stays flat


@dataclass
class Published:
    """What was sent: publish time per event id, next offset per partition, how long it took."""

    publish_ms: dict[str, float] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.publish_ms)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    events: Sequence[dict],
    *,
    rate: float | None = None,
    into: Published | None = None,
) -> Published:
    """Send ``events`` keyed by user; with ``rate`` (events/s) paced on the monotonic clock."""
    out = into or Published()
    payloads = [(e["event_id"], e["user_id"].encode(), orjson.dumps(e)) for e in events]
    pending: list[asyncio.Future] = []
    start = time.monotonic()
    for n, (event_id, key, value) in enumerate(payloads):
        if rate:
            await sleep_until(start + n / rate)
        out.publish_ms[event_id] = time.time() * 1000.0
        pending.append(await producer.send(topic, value=value, key=key))
        if len(pending) >= CHUNK:
            await _settle(pending, out)
    await producer.flush()
    await _settle(pending, out)
    out.seconds += time.monotonic() - start
    return out


async def _settle(pending: list[asyncio.Future], out: Published) -> None:
    for md in await asyncio.gather(*pending):
        out.end_offsets[md.partition] = max(out.end_offsets.get(md.partition, 0), md.offset + 1)
    pending.clear()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument(
        "--rate", type=float, default=None, help="events/s (default: as fast as possible)"
    )
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--topic", default=None)
    ap.add_argument("--bootstrap", default=None)
    args = ap.parse_args(argv)
    from worker.settings import load_settings

    settings = load_settings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    topic = args.topic or settings.topic_events
    events = make_events(
        args.events, users=args.users, zipf_s=args.zipf_s, catalog=load_catalog(), seed=args.seed
    )

    async def run() -> Published:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0 if args.rate else 5)
        await producer.start()
        try:
            return await publish(producer, topic, events, rate=args.rate)
        finally:
            await producer.stop()

    report = asyncio.run(run())
    print(
        f"published {report.count} events to {topic} in {report.seconds:.1f}s "
        f"({report.rate:,.0f} events/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
