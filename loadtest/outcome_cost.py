"""What outcome tracking and a shadow model cost, and what the live figures say, on a real Redis.

    python -m loadtest.outcome_cost ../shared/data/rees46/events-dev.csv [--format rees46]
        [--rounds 3] [--batch-max 256] [--partitions 8] [--sample 1.0] [--model DIR]
        [--shadow DIR]
        [--redis-url URL] [--out FILE.json]

The recorded stream runs, in event-time order, through the worker's own pipeline
(:class:`worker.scoring.pipeline.Pipeline` on a :class:`~worker.windows.RedisWindowStore`, the
anomaly detectors on, the shipped model unless ``--model``), in micro-batches of
``--batch-max`` messages, each user's events on one of ``--partitions`` partitions (as a
producer keying by user would place them). Three configurations, each round in turn, on fresh
keys (the phrase vectors are shared and warmed first, as a running worker's would be):

- ``off``: ``INTENT_OUTCOMES_ENABLED=off``;
- ``outcomes``: outcome tracking on (the default);
- ``shadow``: outcome tracking and a shadow model (default: a second instance of the same
  model directory, so the same encoder and shared vectors).

Per configuration: batch time (process, then the outcome state write that follows delivery;
Kafka is not involved), its parts (window round trip, model, shadow, outcome tracking on the
batch's path), the outcome state's own read and write time (the read runs beside the model),
the Redis server's CPU time, and at the end the outcome state in Redis: keys, waiting scores,
done markers, bytes (``MEMORY USAGE``). The shares are each configuration against ``off`` in the
same round. The ``outcomes`` configuration also reports the live figures over every outcome
(the whole stream as the live window) next to ``compute_metrics`` on the same pairs.
Without ``--redis-url`` it starts its own redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from worker.dataset import load_events
from worker.ops.stack import redis_or_started
from worker.outcomes.live import LiveQuality
from worker.runtime import load_configured, tune_gc
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.vectors import RedisVectorStore
from worker.windows import RedisWindowStore

CONFIGS = ("off", "outcomes", "shadow")


def messages(events: list[dict], partitions: int) -> list[Message]:
    out = []
    offsets = [0] * partitions
    for e in events:
        p = zlib.crc32(e["user_id"].encode()) % partitions
        out.append(Message(key=e["user_id"].encode(), value=orjson.dumps(e), topic="clickstream",
                           partition=p, offset=offsets[p], timestamp_ms=time.time_ns() // 10**6))
        offsets[p] += 1
    return out


async def server_cpu_s(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def outcome_state(client: aioredis.Redis, prefix: str) -> dict:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:{{*}}:o", count=1000)]
    due = [k async for k in client.scan_iter(match=f"{prefix}:od:*", count=1000)]
    waiting = done = biggest = 0
    nbytes = 0
    for k in keys:
        values = await client.hvals(k)
        d = sum(1 for v in values if v[:1] == b"-")
        done += d
        waiting += len(values) - d
        biggest = max(biggest, len(values))
        nbytes += await client.memory_usage(k) or 0
    due_members = 0
    for k in due:
        due_members += await client.zcard(k)
        nbytes += await client.memory_usage(k) or 0
    return {"user_hashes": len(keys), "waiting": waiting, "done_markers": done,
            "largest_hash": biggest, "due_members": due_members, "bytes": nbytes,
            "bytes_per_entry": nbytes / max(1, waiting + done)}


async def one_pass(config: str, msgs: list[Message], args, url: str, model, shadow,
                   executor) -> dict:
    prefix = f"oc{uuid.uuid4().hex[:8]}"
    settings = load_settings(redis_url=url, key_prefix=prefix, batch_max=args.batch_max,
                             outcomes_enabled=config != "off", outcome_lateness_s=0,
                             outcome_sample=args.sample, live_window=100_000)  # every outcome
    store = RedisWindowStore.from_settings(settings)
    await store.start()
    live = LiveQuality(window=settings.live_window)
    for m in (model, shadow):  # as the worker does at start-up: drift against training time
        live.set_reference(m.name, m.version, m.config.score_reference)
    pipe = Pipeline.from_settings(settings, store=store, scorer=model, executor=executor,
                                  shadow=shadow if config == "shadow" else None, live=live)
    if pipe.outcomes is not None:
        await pipe.outcomes.state.start()
    admin = aioredis.Redis.from_url(url)
    parts = {"batch_s": 0.0, "store_s": 0.0, "model_s": 0.0, "shadow_s": 0.0, "outcome_s": 0.0}
    outcomes: list[dict] = []
    try:
        cpu0 = await server_cpu_s(admin)
        for i in range(0, len(msgs), args.batch_max):
            t0 = time.perf_counter()
            result = await pipe.process(msgs[i:i + args.batch_max])
            await pipe.confirm_outcomes(result)  # what the runner does once delivered
            parts["batch_s"] += time.perf_counter() - t0
            for name in ("store_s", "model_s", "shadow_s", "outcome_s"):
                parts[name] += getattr(result, name)
            outcomes.extend(orjson.loads(o.value) for o in result.outcomes)
        server_s = await server_cpu_s(admin) - cpu0
        state = await outcome_state(admin, prefix) if config != "off" else None
    finally:
        await admin.aclose()
        await store.stop()
    batches = -(-len(msgs) // args.batch_max)
    out = {"config": config, "batches": batches, **parts, "redis_server_cpu_s": server_s,
           "outcomes": len(outcomes), "positives": sum(o["label"] for o in outcomes),
           "state": state}
    tracker = pipe.outcomes
    if tracker is not None:
        out |= {"state_read_s": tracker.read_s, "state_write_s": tracker.write_s,
                "dropped": tracker.dropped, "stale": tracker.stale}
    if config == "outcomes":
        out["live"] = live_next_to_offline(live, outcomes, model.config.split)
    return out


def live_next_to_offline(live: LiveQuality, outcomes: list[dict], split) -> dict:
    """The live figures over every outcome, ``compute_metrics`` on the same pairs, and the same
    on the users the model did not train on (``split``: its config's user split)."""
    from worker.dataset import user_split
    from worker.dataset.metrics import compute_metrics

    def figures_of(chosen: list[dict]) -> dict:
        m = compute_metrics([o["label"] for o in chosen], [o["score"] for o in chosen])
        return {"outcomes": len(chosen), "positives": sum(o["label"] for o in chosen),
                **{k: m[k] for k in ("pr_auc", "roc_auc", "brier", "ece")}}

    figures = [f for f in live.figures() if f.role == "champion"]
    f = figures[0] if figures else None
    out = {"live": None if f is None else {
        "outcomes": f.outcomes, "positives": f.positives, "pr_auc": f.pr_auc,
        "roc_auc": f.roc_auc, "brier": f.brier, "ece": f.ece, "psi": f.psi},
        "compute_metrics": figures_of(outcomes)}
    if split is not None:
        held_out = [o for o in outcomes if user_split(
            o["user_id"], seed=split.seed, val_frac=split.val_frac,
            test_frac=split.test_frac) != "train"]
        out["held_out_users"] = figures_of(held_out)
    return out


async def measure(args, url: str) -> dict:
    events = load_events(args.stream, args.format).events
    msgs = messages(events, args.partitions)
    settings = load_settings(redis_url=url)
    tune_gc(settings)  # the worker's collector threshold, as in the worker process
    vectors = RedisVectorStore(aioredis.Redis.from_url(url), prefix="ocvec")
    await vectors.start()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-model")
    from worker.model import default_model_path

    model_dir = args.model or default_model_path()
    model = load_configured(settings, model_dir, vector_store=vectors, executor=executor)
    shadow = load_configured(settings, args.shadow or model_dir, vector_store=vectors,
                             executor=executor)
    model.warm_up()
    shadow.warm_up()
    print(f"warming vectors with {len(msgs)} events", file=sys.stderr)
    await one_pass("off", msgs, args, url, model, shadow, executor)
    rounds = []
    try:
        for r in range(args.rounds):
            row = {}
            for config in CONFIGS:
                row[config] = await one_pass(config, msgs, args, url, model, shadow, executor)
                print(f"round {r} {config}: {row[config]['batch_s']:.2f}s", file=sys.stderr)
            rounds.append(row)
    finally:
        await vectors.stop()
        executor.shutdown()
    return {"events": len(events), "batch_max": args.batch_max, "partitions": args.partitions,
            "sample": args.sample,
            "model": f"{model.name} {model.version}",
            "shadow": f"{shadow.name} {shadow.version}", "rounds": rounds,
            "summary": summarise(rounds)}


def summarise(rounds: Sequence[dict]) -> dict:
    def extra(config: str, key: str) -> float:
        return statistics.median(r[config][key] / r["off"][key] - 1 for r in rounds)

    return {
        "outcomes_batch_time_added": extra("outcomes", "batch_s"),
        "outcomes_path_share_of_batch_time": statistics.median(
            r["outcomes"]["outcome_s"] / r["outcomes"]["batch_s"] for r in rounds),
        "outcomes_redis_server_cpu_added": extra("outcomes", "redis_server_cpu_s"),
        "outcomes_state_time_vs_window_round_trips": statistics.median(
            (r["outcomes"]["state_read_s"] + r["outcomes"]["state_write_s"])
            / r["outcomes"]["store_s"] for r in rounds),
        "shadow_batch_time_added_over_outcomes": statistics.median(
            r["shadow"]["batch_s"] / r["outcomes"]["batch_s"] - 1 for r in rounds),
        "shadow_share_of_batch_time": statistics.median(
            r["shadow"]["shadow_s"] / r["shadow"]["batch_s"] for r in rounds),
        "shadow_redis_server_cpu_added_over_outcomes": statistics.median(
            r["shadow"]["redis_server_cpu_s"] / r["outcomes"]["redis_server_cpu_s"] - 1
            for r in rounds),
        "batch_s_median": {c: statistics.median(r[c]["batch_s"] for r in rounds)
                           for c in CONFIGS},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", type=Path, help="a recorded stream (REES46 CSV or JSON Lines)")
    ap.add_argument("--format", default="rees46", choices=("rees46", "jsonl"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-max", type=int, default=256)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--sample", type=float, default=1.0,
                    help="INTENT_OUTCOME_SAMPLE of the outcomes and shadow configurations")
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--shadow", type=Path, default=None, help="default: the same directory")
    ap.add_argument("--redis-url", default=None, help="default: start a redis-server")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.stream.is_file():
        ap.error(f"{args.stream}: no such file")
    with redis_or_started(args.redis_url, name="outcome-cost") as url:
        result = asyncio.run(measure(args, url))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(orjson.dumps(result["summary"], option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
