"""What keeping each user's latest score costs: the background write alone, on a real Redis.

    python -m loadtest.latest_write [--users 120] [--batches 300] [--redis-url URL]

Writes ``--batches`` calls of ``--users`` score records (a ~400-byte record each, every call
newer than the last, so every record is written) through
:class:`worker.latest.RedisLatestScores`, as the worker's write-behind does after each batch,
and prints the client's CPU time per record (the worker's share), the wall time per record and
per call, and the server's time per call (``INFO commandstats``). Without ``--redis-url`` it
starts its own redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis

from worker.latest import LatestScore, RedisLatestScores
from worker.ops.stack import redis_or_started
from worker.windows import KeyBuilder
from worker.windows.packing import pack_with_hiredis

T0 = 1_700_000_000_000
RECORD = {
    "score_id": "0" * 32, "user_id": "514060689", "session_id": "s" * 36, "event_id": "e" * 20,
    "event_ids": ["e" * 20, "f" * 20], "score": 0.5, "model": {"name": "noop", "version": "0"},
    "window": {"events": 12, "span_s": 340.0}, "event_ts": "2019-10-01T02:00:00Z",
    "scored_at": "2019-10-01T02:00:00.123Z", "latency_ms": 12,
}


async def measure(url: str, users: int, batches: int) -> dict:
    client = pack_with_hiredis(aioredis.Redis.from_url(url))
    prefix = f"lw{uuid.uuid4().hex[:8]}"
    store = RedisLatestScores(client, keys=KeyBuilder(prefix), ttl_s=3600)
    record = orjson.dumps(RECORD)
    try:
        await store.write([LatestScore("warm", T0, "a", record)])  # loads the script
        await client.config_resetstat()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for b in range(batches):
            await store.write([LatestScore(f"u{u}", T0 + b, f"e{b}", record)
                               for u in range(users)])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    n = users * batches
    return {"records": n, "record_bytes": len(record), "users_per_call": users,
            "client_cpu_us_per_record": cpu / n * 1e6, "wall_us_per_record": wall / n * 1e6,
            "wall_ms_per_call": wall / batches * 1e3,
            "server_us_per_call": stats.get("usec_per_call")}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=120, help="records per call (a batch's users)")
    ap.add_argument("--batches", type=int, default=300, help="calls")
    ap.add_argument("--redis-url", default=None, help="default: start a redis-server")
    args = ap.parse_args(argv)
    with redis_or_started(args.redis_url, name="latest-write") as url:
        result = asyncio.run(measure(url, args.users, args.batches))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
