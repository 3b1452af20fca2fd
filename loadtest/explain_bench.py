"""Are the explanations faithful, and what do they cost? The shipped pooled model on the
validation users of its split.

    python -m loadtest.explain_bench ../shared/data/rees46/events-dev.csv --format rees46 \
        --out docs/benchmarks/2026-12-05-explain.json

**Faithfulness.** The examples ``train`` builds (the worker's window: at most 50 events over at
most 3,600 s, each example the window after one event) of the validation users
(``user_split(seed="intent-v1", val_frac=0.2) == "val"``, the users the shipped model was not
fitted on), those of two events or more. Per window: the explanation's top-ranked event and
one event drawn at random (seeded) are each deleted from the window, which is scored again
from scratch (context features recomputed from the shortened window, which the explanation
itself holds fixed); reported: the mean absolute change of the score for each, how often the
top-ranked deletion moved it at least as much, and the same means with the features held
(the explanation's own effects).

**Cost.** The same users' events replayed through :class:`~worker.scoring.pipeline.Pipeline`
on a memory window store, in batches of ``--batch`` events (event-time order), anomaly
detectors on, as the worker runs: once to fill the process's vector cache (the stream's
steady state: phrases repeat), then ``--repeats`` passes each with ``INTENT_EXPLAIN`` off and
on, alternating. Reported: the time of ``Pipeline.process`` per batch (the batch time with the
model) and its model part, per setting (the fastest pass of each), and the explanation's
cost: (on - off) / off of the batch time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from worker.dataset.examples import DEFAULT_MAX_EVENTS, DEFAULT_WINDOW_SECONDS, build_examples
from worker.dataset.loading import load_events
from worker.dataset.split import user_split
from worker.features import build_input
from worker.model.event_model import EventVectorModel
from worker.model.loading import load_model
from worker.model.shipped import default_model_path
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.vectors import MemoryVectorStore
from worker.windows import MemoryWindowStore


def faithfulness(model: EventVectorModel, windows: Sequence[Sequence[dict]], *,
                 seed: int = 14) -> dict:
    rng = np.random.default_rng(seed)
    windows = [list(w) for w in windows if len(w) >= 2]
    price = model.phrase_price

    def inputs(ws: Sequence[Sequence[dict]]) -> list:
        return [build_input(w, max_chars=0, phrase_price=price) for w in ws]

    t0 = time.perf_counter()
    scores, explanations = model.explain(inputs(windows), top=50)
    top_idx, rand_idx, top_held, rand_held = [], [], [], []
    for w, e in zip(windows, explanations, strict=True):
        n = len(w)
        effects = dict(e.events)  # position (newest first) -> effect, every event (top=50)
        first_pos = e.events[0][0]
        rand_pos = int(rng.integers(0, n))
        top_idx.append(n - 1 - first_pos)
        rand_idx.append(n - 1 - rand_pos)
        top_held.append(abs(effects[first_pos]))
        rand_held.append(abs(effects[rand_pos]))
    without_top = model.score(inputs([w[:i] + w[i + 1:]
                                      for w, i in zip(windows, top_idx, strict=True)]))
    without_rand = model.score(inputs([w[:i] + w[i + 1:]
                                       for w, i in zip(windows, rand_idx, strict=True)]))
    base = np.array(scores)
    top_moves = np.abs(base - np.array(without_top))
    rand_moves = np.abs(base - np.array(without_rand))
    diff = top_moves - rand_moves
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return {
        "windows": len(windows), "events": int(sum(map(len, windows))),
        "mean_abs_change_top_ranked": float(top_moves.mean()),
        "mean_abs_change_random": float(rand_moves.mean()),
        "mean_difference_ci95": [float(diff.mean() - 1.96 * sd / math.sqrt(len(diff))),
                                 float(diff.mean() + 1.96 * sd / math.sqrt(len(diff)))],
        "share_top_ranked_moves_at_least_as_much": float((top_moves >= rand_moves).mean()),
        "features_held": {"mean_abs_effect_top_ranked": float(np.mean(top_held)),
                          "mean_abs_effect_random": float(np.mean(rand_held))},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def messages(events: Sequence[dict], batch: int) -> list[list[Message]]:
    out = [Message(key=e["user_id"].encode(), value=orjson.dumps(e), topic="clickstream",
                   partition=0, offset=i, timestamp_ms=e["ts"]) for i, e in enumerate(events)]
    return [out[i:i + batch] for i in range(0, len(out), batch)]


async def replay(model: EventVectorModel, batches: Sequence[Sequence[Message]], *,
                 explain: bool) -> dict:
    settings = load_settings(explain=explain)
    pipe = Pipeline.from_settings(settings, store=MemoryWindowStore.from_settings(settings),
                                  scorer=model)
    total = model_s = 0.0
    records = explained = 0
    for batch in batches:
        t0 = time.perf_counter()
        result = await pipe.process(batch)
        total += time.perf_counter() - t0
        model_s += result.model_s
        records += len(result.scores)
        explained += sum(b'"explanation"' in o.value for o in result.scores)
    return {"batch_ms": total / len(batches) * 1e3, "model_ms": model_s / len(batches) * 1e3,
            "records": records, "explained": explained}


def cost(model: EventVectorModel, events: Sequence[dict], *, batch: int, repeats: int) -> dict:
    batches = messages(events, batch)
    asyncio.run(replay(model, batches, explain=True))  # fills the vector cache
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(repeats):
        for name in ("off", "on"):
            runs[name].append(asyncio.run(replay(model, batches, explain=name == "on")))
    best = {name: min(rs, key=lambda r: r["batch_ms"]) for name, rs in runs.items()}
    off, on = best["off"]["batch_ms"], best["on"]["batch_ms"]
    return {"batches": len(batches), "events_per_batch": batch, "repeats": repeats,
            "off": best["off"], "on": best["on"],
            "all_batch_ms": {k: [round(r["batch_ms"], 3) for r in v] for k, v in runs.items()},
            "explain_ms_per_batch": on - off,
            "share_of_batch_time": (on - off) / off}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="events file")
    ap.add_argument("--format", default="rees46")
    ap.add_argument("--batch", type=int, default=256, help="events per micro-batch")
    ap.add_argument("--repeats", type=int, default=3, help="replays per setting")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    loaded = load_events(args.path, args.format)  # type: ignore[arg-type]
    val_events = [e for e in loaded.events if user_split(e["user_id"]) == "val"]
    examples = build_examples(val_events, max_events=DEFAULT_MAX_EVENTS,
                              window_seconds=DEFAULT_WINDOW_SECONDS)
    model = load_model(default_model_path(), device="cpu", threads=args.threads,
                       vector_store=MemoryVectorStore())
    if not isinstance(model, EventVectorModel):
        raise SystemExit("the shipped model is not the pooled window model")
    result = {
        "data": {"source": str(args.path), "fingerprint": loaded.fingerprint,
                 "validation_users": len({e["user_id"] for e in val_events}),
                 "events": len(val_events), "examples": len(examples)},
        "model": {"name": model.name, "version": model.version},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "threads": args.threads},
        "faithfulness": faithfulness(model, [ex.window for ex in examples]),
        "cost": cost(model, val_events, batch=args.batch, repeats=args.repeats),
    }
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
