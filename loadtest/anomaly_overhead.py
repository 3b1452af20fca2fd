"""What the anomaly detectors add to the worker's per-batch time (a benchmark, prints figures).

    python -m loadtest.anomaly_overhead /tmp/anom/events.jsonl --format jsonl [--events 4096]
        [--batch 256] [--rounds 2] [--scorer model|noop]

Replays the same events, in event-time order, ``--batch`` messages at a time, through the
worker's own :class:`worker.scoring.pipeline.Pipeline` on a real redis-server (started here on
a free port) with the shipped model, once with the detectors off and once on, ``--rounds``
times alternating (fresh keys each run, so both start from empty state). Per batch it times
``process`` plus ``confirm`` (the cooldown write after delivery), i.e. everything the worker
does for a batch except Kafka I/O. Reported: mean batch time off and on, the overhead, and its
parts: detector CPU time (``detect_s``), extra model sequences (out-of-character prior
windows) and the store's round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

import orjson

from worker.dataset.loading import load_events
from worker.ops.stack import start_redis
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.windows import RedisWindowStore


async def run_once(events: list[dict], *, enabled: bool, batch: int, scorer,
                   redis_url: str) -> dict:
    settings = load_settings(redis_url=redis_url, key_prefix=f"ovh{uuid.uuid4().hex[:8]}",
                             anomaly_enabled=enabled)
    store = RedisWindowStore.from_settings(settings)
    await store.start()
    pipe = Pipeline.from_settings(settings, store=store, scorer=scorer)
    values = [orjson.dumps(e) for e in events]
    times, store_s, model_s, detect_s, seqs, alerts = [], 0.0, 0.0, 0.0, 0, 0
    try:
        for i in range(0, len(values), batch):
            msgs = [Message(None, v, "clickstream", 0, i + j, 0)
                    for j, v in enumerate(values[i:i + batch])]
            t0 = time.perf_counter()
            result = await pipe.process(msgs)
            await pipe.confirm(result)
            times.append(time.perf_counter() - t0)
            store_s += result.store_s
            model_s += result.model_s
            detect_s += result.detect_s
            seqs += result.sequences
            alerts += len(result.alerts)
    finally:
        await store.stop()
    return {"enabled": enabled, "batches": len(times), "batch_s_mean": statistics.fmean(times),
            "total_s": sum(times), "store_s": store_s, "model_s": model_s, "detect_s": detect_s,
            "sequences": seqs, "alerts": alerts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.anomaly_overhead",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path)
    ap.add_argument("--format", choices=("jsonl", "rees46"), default="jsonl")
    ap.add_argument("--events", dest="n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scorer", choices=("model", "noop"), default="model")
    args = ap.parse_args(argv)

    events = load_events(args.events, args.format).events[:args.n]  # in event-time order
    if args.scorer == "model":
        from worker.model import default_model_path, load_model

        scorer = load_model(default_model_path(), device="cpu")
    else:
        from worker.scoring.scorer import NoopScorer

        scorer = NoopScorer()
    redis = start_redis()
    url = f"redis://127.0.0.1:{redis.port}/0"
    try:
        asyncio.run(run_once(events[:args.batch], enabled=True, batch=args.batch, scorer=scorer,
                             redis_url=url))  # warm-up: model shapes, scripts
        runs = []
        for _ in range(args.rounds):
            for enabled in (False, True):
                runs.append(asyncio.run(run_once(events, enabled=enabled, batch=args.batch,
                                                 scorer=scorer, redis_url=url)))
    finally:
        redis.stop()
    off = [r for r in runs if not r["enabled"]]
    on = [r for r in runs if r["enabled"]]

    def mean(rs: list[dict], k: str) -> float:
        return statistics.fmean(r[k] for r in rs)

    b_off, b_on = mean(off, "batch_s_mean"), mean(on, "batch_s_mean")
    n_batches = on[0]["batches"]
    print(f"{len(events)} events, batches of {args.batch} ({n_batches} per run), {args.rounds} "
          f"rounds, scorer {args.scorer}")
    print(f"{'':<26}{'off':>10}{'on':>10}")
    print(f"{'batch time, mean (ms)':<26}{b_off * 1e3:>10.1f}{b_on * 1e3:>10.1f}")
    for k in ("store_s", "model_s", "detect_s"):
        print(f"{k + ' per batch (ms)':<26}{mean(off, k) / n_batches * 1e3:>10.1f}"
              f"{mean(on, k) / n_batches * 1e3:>10.1f}")
    print(f"{'model sequences per run':<26}{mean(off, 'sequences'):>10.0f}"
          f"{mean(on, 'sequences'):>10.0f}")
    print(f"{'alerts per run':<26}{mean(off, 'alerts'):>10.0f}{mean(on, 'alerts'):>10.0f}")
    print(f"overhead of the detectors: {(b_on / b_off - 1) * 100:+.1f} % of the batch time "
          f"(detector CPU alone: {mean(on, 'detect_s') / mean(on, 'total_s') * 100:.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
