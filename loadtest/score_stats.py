"""Read a score topic from the start and report coverage, duplicates, throughput and latency.

    python -m loadtest.score_stats --expect 13846 [--topic intent-scores] [--timeout 600]

Uses INTENT_KAFKA_BOOTSTRAP / INTENT_TOPIC_SCORES like the worker. Throughput is events
covered divided by the time between the first and the last ``scored_at``; latency is each
record's ``latency_ms`` (Kafka timestamp of the newest covered event -> publication).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from worker.settings import load_settings


def percentile(sorted_xs: list[float], q: float) -> float:
    if not sorted_xs:
        return float("nan")
    i = min(len(sorted_xs) - 1, max(0, round(q / 100 * (len(sorted_xs) - 1))))
    return sorted_xs[i]


async def collect(bootstrap: list[str], topic: str, expect: int, timeout_s: float) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    scored: list[float] = []
    batches: Counter[str] = Counter()  # records of one micro-batch share their scored_at
    records = 0
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(counts) < expect and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    r = orjson.loads(m.value)
                    records += 1
                    counts.update(r["event_ids"])
                    latencies.append(r["latency_ms"])
                    scored.append(datetime.fromisoformat(r["scored_at"]).timestamp())
                    batches[r["scored_at"]] += len(r["event_ids"])
    finally:
        await consumer.stop()
    latencies.sort()
    span = (max(scored) - min(scored)) if scored else 0.0
    events = sum(counts.values())
    return {
        "records": records, "events_covered": len(counts), "expected": expect,
        "covered_more_than_once": sum(1 for n in counts.values() if n > 1),
        "events_per_s": round(events / span, 1) if span > 0 else None,
        "batches": len(batches),
        "events_per_batch_mean": round(events / len(batches), 1) if batches else None,
        "records_per_s": round(records / span, 1) if span > 0 else None,
        "latency_ms": {f"p{q}": percentile(latencies, q) for q in (50, 95, 99)}
        | {"max": latencies[-1] if latencies else None},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expect", type=int, required=True, help="distinct event ids to wait for")
    ap.add_argument("--topic", default=None)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    settings = load_settings()
    out = asyncio.run(collect(settings.bootstrap_list, args.topic or settings.topic_scores,
                              args.expect, args.timeout))
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
