"""CPU per ``build_input`` call on windows as the worker sees them, this checkout against a
baseline revision, with a check that both give identical inputs.

The windows: Zipf events from :mod:`loadtest.gen` cut into micro-batches, each batch appended
to a :class:`~worker.windows.MemoryWindowStore` and its windows decoded through a
:class:`~worker.windows.codec.DecodedEvents` cache, as the Redis store does: an active user's
window comes back batch after batch, grown by the new events, made of the same event dicts.
The new code runs with an :class:`~worker.features.EventCache` kept across batches, as the
worker's pipeline does; the baseline (``git show REV:worker/features/...``) without one.

    python -m loadtest.inputs_bench [--events 20000 --users 5000 --zipf-s 1.1] [--repeat 5]
    python -m loadtest.inputs_bench --source dev --examples   # the REES46 dev slice, plus the
                                                              # training examples' windows

Timing is ``time.process_time`` over all windows of all batches, the minimum of
``--repeat`` runs (a fresh cache each run, so its warm-up counts); prints µs per window.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from loadtest.gen import CATALOG_CANDIDATES, batches, load_catalog, make_events
from worker.dataset.examples import build_examples
from worker.dataset.loading import load_events
from worker.events import parse_event
from worker.features import EventCache, build_input
from worker.windows import MemoryWindowStore
from worker.windows.codec import DecodedEvents, encode_event

_ROOT = Path(__file__).resolve().parents[1]
_FEATURE_MODULES = ("window", "text", "context", "inputs")


def baseline_build_input(rev: str) -> Callable:
    """``build_input`` of ``worker/features`` at git revision ``rev``, importable beside this
    checkout's (a temporary package ``_baseline_features``)."""
    tmp = Path(tempfile.mkdtemp(prefix="inputs-bench-"))
    pkg = tmp / "_baseline_features"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in _FEATURE_MODULES:
        source = subprocess.run(["git", "show", f"{rev}:worker/features/{name}.py"], cwd=_ROOT,
                                check=True, capture_output=True, text=True).stdout
        (pkg / f"{name}.py").write_text(source.replace("worker.features.", "_baseline_features."))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("_baseline_features.inputs").build_input


def worker_windows(events: Sequence[dict], *, batch_max: int, max_events: int = 50,
                   window_seconds: int = 3600, decode_cache: int = 20_000
                   ) -> list[list[list[dict]]]:
    """Per micro-batch, the windows of the users it touches (the event dicts shared between
    batches while their payloads stay in the decoded-event cache, as with Redis)."""
    store = MemoryWindowStore(max_events=max_events, span_ms=window_seconds * 1000)
    decoded = DecodedEvents(decode_cache)
    out = []
    for chunk in batches(list(events), batch_max):
        users: dict[str, dict[str, dict]] = {}
        for ev in chunk:
            users.setdefault(ev["user_id"], {}).setdefault(ev["event_id"], ev)
        fresh = store.append_sync({u: list(evs.values()) for u, evs in users.items()})
        out.append([decoded.window([encode_event(e, u)[2] for e in fresh[u]], u) for u in users])
    return out


def check_examples(events: Sequence[dict], old_build: Callable, *, max_chars: int) -> str:
    """Compare old and new inputs of the training examples' windows; '' when all are equal."""
    windows = [e.window for e in build_examples(events, max_events=50, window_seconds=3600)]
    cache = EventCache(20_000)
    for i, w in enumerate(windows):
        old = old_build(w, max_chars=max_chars)
        for new in (build_input(w, max_chars=max_chars),
                    build_input(w, max_chars=max_chars, cache=cache)):
            if (new.text, new.features) != (old.text, old.features):
                return f"MISMATCH on training example window {i}"
    print(f"{len(windows)} training example windows: identical inputs (old, new, new cached)")
    return ""


def zipf_events(n: int, *, users: int, zipf_s: float, seed: int = 5) -> list[dict]:
    """Normalised events (``parse_event`` of the generator's JSON, as the worker reads them)."""
    raw = make_events(n, users=users, zipf_s=zipf_s, catalog=load_catalog(), seed=seed)
    return [parse_event(orjson.dumps(e), max_bytes=65_536) for e in raw]


def time_batches(per_batch: Sequence[list[list[dict]]], runs: dict[str, Callable[[], Callable]],
                 repeat: int) -> dict[str, float]:
    """CPU seconds per run: for each batch, the minimum over ``repeat`` tries, summed.

    Each run is a factory of a function of one batch's windows; it is made ``repeat`` times
    (each with its own state, a cache say) and every copy sees every batch in order, so the
    tries of a batch start from the same state. Tries are interleaved across runs and kept
    short (one batch), so a busy spell of this shared machine spoils a try, not a run.
    """
    copies = {name: [make() for _ in range(repeat)] for name, make in runs.items()}
    total = dict.fromkeys(runs, 0.0)
    for windows in per_batch:
        best = dict.fromkeys(runs, float("inf"))
        for k in range(repeat):
            for name in runs:
                t0 = time.process_time()
                copies[name][k](windows)
                best[name] = min(best[name], time.process_time() - t0)
        for name in runs:
            total[name] += best[name]
    return total


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--batch-max", type=int, default=256)
    ap.add_argument("--max-chars", type=int, default=768)
    ap.add_argument("--cache-events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default="main", help="git revision of the old code")
    ap.add_argument("--source", choices=("zipf", "dev"), default="zipf",
                    help="zipf: loadtest.gen events; dev: the REES46 dev slice (all of it)")
    ap.add_argument("--examples", action="store_true",
                    help="also check the training examples' windows (no timing)")
    args = ap.parse_args(argv)

    old_build = baseline_build_input(args.baseline)
    if args.source == "dev":
        source = load_events(CATALOG_CANDIDATES[0], "rees46").events
    else:
        source = zipf_events(args.events, users=args.users, zipf_s=args.zipf_s)
    if args.examples:
        found = check_examples(source, old_build, max_chars=args.max_chars)
        if found:
            print(found, file=sys.stderr)
            return 1
    per_batch = worker_windows(source, batch_max=args.batch_max)
    windows = sum(len(b) for b in per_batch)
    events = sum(len(w) for b in per_batch for w in b)
    max_chars = args.max_chars

    def old() -> Callable:
        return lambda windows: [old_build(w, max_chars=max_chars) for w in windows]

    def new() -> Callable:
        cache = EventCache(args.cache_events)
        return lambda windows: [build_input(w, max_chars=max_chars, cache=cache) for w in windows]

    def new_uncached() -> Callable:
        return lambda windows: [build_input(w, max_chars=max_chars) for w in windows]

    runs = {"old": old, "new": new, "new, no cache": new_uncached}
    outputs = {name: [(i.text, i.features) for b in per_batch for i in make()(b)]
               for name, make in runs.items()}
    for name, got in outputs.items():
        if got != outputs["old"]:
            bad = next(k for k, (a, b) in enumerate(zip(got, outputs["old"], strict=True))
                       if a != b)
            print(f"MISMATCH ({name}) at window {bad}", file=sys.stderr)
            return 1
    print(f"{len(per_batch)} batches, {windows} windows, {events / windows:.1f} events per "
          f"window; identical inputs (old, new, new without cache)")
    best = time_batches(per_batch, runs, args.repeat)
    for name, t in best.items():
        print(f"{name:>14}: {t / windows * 1e6:7.1f} µs per window  ({best['old'] / t:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
