"""Row (a) of the bench: plain aiokafka consume -> produce, the ceiling for a Python consumer.

    python -m loadtest.relay --bootstrap H:P --source T --dest T2 --group G [--batch-max 256]

A consumer group reads ``--source`` in batches of at most ``--batch-max`` (waiting at most
``--wait-ms``), sends every message unchanged (same key and value) to ``--dest``, waits for the
deliveries and commits: the worker's delivery contract (at-least-once, commit after the
outputs are out) without parsing, Redis or a model. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

RELAY_BATCH_HEADER = "relay-batch"  # numbers the relay's batches, as scored_at does the worker's


async def relay(
    bootstrap: str,
    source: str,
    dest: str,
    group: str,
    *,
    batch_max: int,
    wait_ms: int,
    stop: asyncio.Event,
    fetch_max_wait_ms: int = 500,
) -> int:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    n = batches = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=batch_max)
            headers = [(RELAY_BATCH_HEADER, str(batches).encode())]
            futures = [
                await producer.send(dest, key=m.key, value=m.value, headers=headers)
                for msgs in batch.values()
                for m in msgs
            ]
            if futures:
                batches += 1
                await asyncio.gather(*futures)
                await consumer.commit()
                n += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()
    return n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--batch-max", type=int, default=256)
    ap.add_argument("--wait-ms", type=int, default=50)
    ap.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=500,
        help="aiokafka's default; Faust's consumer uses 1500",
    )
    args = ap.parse_args(argv)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await relay(
            args.bootstrap,
            args.source,
            args.dest,
            args.group,
            batch_max=args.batch_max,
            wait_ms=args.wait_ms,
            stop=stop,
            fetch_max_wait_ms=args.fetch_max_wait_ms,
        )

    n = asyncio.run(run())
    print(f"relayed {n} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
