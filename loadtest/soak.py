"""Backpressure soak: a large backlog through the no-op worker, its RSS sampled over time.

    python -m loadtest.soak --events 1000000 [--users 50000] [--sample-s 10] [--json out.json]

Starts the embedded stack (Tansu + redis-server), starts ``intent-worker run`` with
``INTENT_SCORER=noop``, publishes ``--events`` click events as fast as the producer goes (far
faster than the worker consumes, so a backlog builds up in the broker), and samples the
worker's resident memory (``/proc/<pid>/status`` VmRSS) every ``--sample-s`` seconds until
every event is committed by the worker's consumer group. With bounded buffers (Faust's stream
buffer, aiokafka's per-partition fetch size, the producer's buffer) consumption pauses while a
batch is in flight instead of reading ahead, so the RSS must stay flat however long the
backlog: the report prints the samples, the RSS at 10 % of the events and at the end, and the
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtest.procs import rss_mib
from worker.ops.stack import EmbeddedStack, free_port

TYPES = ["view"] * 8 + ["add_to_cart", "search", "purchase"]


def event(i: int, users: int, rnd: random.Random, t0: int) -> tuple[bytes, bytes]:
    user = f"u{int(rnd.paretovariate(1.2)) % users}"
    etype = rnd.choice(TYPES)
    doc: dict = {"event_id": f"soak-{i}", "user_id": user, "event_type": etype, "ts": t0 + i * 10}
    if etype == "search":
        doc["query"] = "running shoes"
    else:
        k = rnd.randrange(500)
        doc["product"] = {"id": f"p{k}", "title": f"product {k}", "category": f"cat.{k % 40}",
                          "price": 5.0 + k}
    return user.encode(), orjson.dumps(doc)


async def publish(bootstrap: str, topic: str, n: int, users: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10,
                                max_batch_size=512 * 1024)
    await producer.start()
    rnd, t0, start = random.Random(1), 1_700_000_000_000, time.monotonic()
    try:
        pending = []
        for i in range(n):
            key, value = event(i, users, rnd, t0)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - start


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Events the group has committed (sum of committed offsets; the topic starts at 0).
    A group-less-assignment consumer reading the group's offsets (Tansu has no OffsetFetch
    through the admin client)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += (await consumer.committed(TopicPartition(topic, p))) or 0
        return total
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.soak",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--timeout-s", type=float, default=3600.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="intent-soak-"))
    partitions = 8
    with EmbeddedStack(kafka_port=None, redis_port=None, log_dir=workdir) as stack:
        env = {**os.environ, **stack.env(), "INTENT_SCORER": "noop",
               "INTENT_ANOMALY_ENABLED": "true", "INTENT_WEB_PORT": str(free_port()),
               "INTENT_APP_ID": "soak",
               "INTENT_TOPIC_PARTITIONS": str(partitions), "INTENT_LOG_LEVEL": "WARNING",
               "INTENT_WINDOW_TTL_SECONDS": "600", "INTENT_WINDOW_SECONDS": "600"}
        bootstrap = stack.env()["INTENT_KAFKA_BOOTSTRAP"]
        log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        samples: list[tuple[float, int, float]] = []
        try:
            time.sleep(8)  # topics created, group joined
            print(f"publishing {args.events:,} events; worker pid {proc.pid}, "
                  f"log {workdir}/worker.log")
            pub_s = asyncio.run(publish(bootstrap, "clickstream", args.events, args.users))
            print(f"published in {pub_s:.0f}s ({args.events / pub_s:,.0f}/s)")
            start = time.monotonic()
            done = 0
            while done < args.events and time.monotonic() - start < args.timeout_s:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"worker exited with {proc.returncode}; see {workdir}/worker.log")
                done = asyncio.run(committed(bootstrap, "soak", "clickstream", partitions))
                samples.append((round(time.monotonic() - start, 1), done,
                                round(rss_mib(proc.pid) or float("nan"), 1)))
                print(f"  t={samples[-1][0]:7.1f}s committed {done:>9,}  "
                      f"worker RSS {samples[-1][2]:7.1f} MiB", flush=True)
                time.sleep(args.sample_s)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()
    elapsed = samples[-1][0] if samples else 0.0
    early = next((s for s in samples if s[1] >= args.events * 0.1), samples[0] if samples else None)
    result = {"events": args.events, "committed": samples[-1][1] if samples else 0,
              "seconds": elapsed,
              "events_per_s": round((samples[-1][1] if samples else 0) / max(elapsed, 1e-9), 1),
              "rss_mib_at_10pct": early[2] if early else None,
              "rss_mib_end": samples[-1][2] if samples else None,
              "rss_mib_max": max((s[2] for s in samples), default=None), "samples": samples}
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["committed"] >= args.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
