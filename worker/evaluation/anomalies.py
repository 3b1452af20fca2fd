"""Measure the detectors on a clickstream with injected, labelled anomalies.

    python -m loadtest.inject_anomalies ../shared/data/rees46/events-dev.csv --format rees46 \
        --out /tmp/anom/events.jsonl --labels /tmp/anom/labels.json --seed 0
    python -m worker.evaluation.anomalies /tmp/anom/events.jsonl --labels /tmp/anom/labels.json \
        [--scorer model|constant] [--batch-size 1] [--set price_max_robust_z=7] [--json out.json]

The events are replayed in ``(ts, event_id)`` order, ``batch_size`` at a time, through the
worker's own entry point (:class:`worker.anomaly.batch.BatchDetector` on a
:class:`worker.windows.MemoryWindowStore` and its
:class:`worker.anomaly.state.MemoryDetectorState`, which have the Redis stores' semantics):
windows, category price samples read before and updated with each batch, the four detectors
and the cooldown. The out-of-character detector needs the user's intent score just before
each candidate purchase: the score of the window's events before it, computed on demand
(only for candidates, cached) by the ``scores`` function, or a constant stand-in.

Reported per kind: recall (an injected anomaly counts as found when an emitted alert of
its kind lists one of its events), false alerts (emitted alerts that list no injected event
at all) per 10,000 clean events, alerts on anomalies of another kind, and the thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from worker.anomaly.alerts import Alert, ModelRef, alert_record
from worker.anomaly.batch import OOC, BatchDetector
from worker.anomaly.config import KINDS, DetectorConfig
from worker.anomaly.state import MemoryDetectorState
from worker.errors import ConfigError
from worker.features.window import by_event_time
from worker.windows import MemoryWindowStore

__all__ = ["ScoreSource", "constant_scores", "evaluate_detectors", "format_table", "main",
           "model_scores"]

ScoreFn = Callable[[Sequence[Sequence[dict]]], Sequence[float]]


@dataclass(slots=True)
class ScoreSource:
    """Intent scores of windows for the out-of-character detector, with a cache."""

    fn: ScoreFn
    description: str
    model: ModelRef | None = None
    calls: int = 0
    seconds: float = 0.0
    _cache: dict[tuple[str, ...], float] = field(default_factory=dict)

    def score(self, window: Sequence[dict]) -> float:
        return self.score_many([window])[0]

    def score_many(self, windows: Sequence[Sequence[dict]]) -> list[float]:
        """Scores of ``windows``; the ones not cached go to the model in one call."""
        keys = [tuple(e["event_id"] for e in w) for w in windows]
        todo = {k: w for k, w in zip(keys, windows, strict=True) if k not in self._cache}
        if todo:
            t0 = time.perf_counter()
            self.calls += len(todo)
            for k, v in zip(todo, self.fn(list(todo.values())), strict=True):
                self._cache[k] = float(v)
            self.seconds += time.perf_counter() - t0
        return [self._cache[k] for k in keys]


def constant_scores(value: float = 0.0) -> ScoreSource:
    """Every window scores ``value``; alerts then name no model. With 0.0 (the fallback when
    no score function is given) the score gate always passes: out-of-character reduces to
    'a purchase of a product the window never touched'."""
    return ScoreSource(lambda windows: [value] * len(windows),
                       f"constant {value} (no model: stand-in score)")


def model_scores(model_dir: str | Path | None = None, *, device: str = "cpu") -> ScoreSource:
    """Scores from an intent model directory (default: the shipped model), through the same
    ``build_input`` and ``IntentModel.score`` as the worker."""
    from worker.features import build_input
    from worker.model import default_model_path, load_model

    model = load_model(model_dir or default_model_path(), device=device)

    def fn(windows: Sequence[Sequence[dict]]) -> list[float]:
        return model.score([build_input(w, max_chars=model.max_chars,
                                        phrase_price=model.phrase_price) for w in windows])

    return ScoreSource(fn, f"model {model.name} {model.version}",
                       ModelRef(model.name, model.version))


def evaluate_detectors(events: Sequence[dict], labels: Mapping[str, Any], config: DetectorConfig,
                       scores: ScoreSource | ScoreFn | None = None, *, max_events: int = 50,
                       window_seconds: int = 3600, batch_size: int = 1) -> dict[str, Any]:
    """Replay ``events`` (normalised) through windows, detectors and cooldown; score the
    emitted alerts against ``labels`` (from :mod:`loadtest.inject_anomalies`).

    ``scores``: a :class:`ScoreSource`, a bare function of windows to scores, or None for
    :func:`constant_scores` (0.0, said in the result). Returns a dict with ``kinds`` (per
    kind figures), ``totals``, ``thresholds``, ``scorer``, ``settings`` and ``false_alerts``
    (the records of alerts on clean events only).
    """
    config.validate()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if scores is None:
        source = constant_scores(0.0)
    elif isinstance(scores, ScoreSource):
        source = scores
    else:
        source = ScoreSource(scores, "caller's score function")
    ordered = _unique_sorted(events)
    run = _Replay(config, source, max_events=max_events, span_ms=window_seconds * 1000)
    t0 = time.perf_counter()
    asyncio.run(run.replay(ordered, batch_size))
    replay_s = time.perf_counter() - t0
    result = _score(run.emitted, run.candidates, ordered, labels)
    result["thresholds"] = config.thresholds()
    result["scorer"] = {"description": source.description,
                        "model": None if source.model is None else
                        {"name": source.model.name, "version": source.model.version},
                        "windows_scored": source.calls,
                        "fallback": scores is None}
    result["settings"] = {"batch_size": batch_size, "max_events": max_events,
                          "window_seconds": window_seconds, "events": len(ordered)}
    result["timing"] = {"replay_s": round(replay_s, 3),
                        "detectors_s": round(run.detect_s, 3),
                        "detectors_us_per_event": round(run.detect_s / max(len(ordered), 1) * 1e6,
                                                        2)}
    return result


class _Replay:
    """The worker's per-batch steps (:class:`worker.anomaly.batch.BatchDetector`) on memory
    stores with the Redis stores' semantics."""

    def __init__(self, config: DetectorConfig, source: ScoreSource, *, max_events: int,
                 span_ms: int) -> None:
        windows = MemoryWindowStore(max_events=max_events, span_ms=span_ms)
        self.detector = BatchDetector(config, MemoryDetectorState(windows))
        self.source = source
        self.emitted: list[Alert] = []
        self.candidates: Counter[str] = Counter()
        self.detect_s = 0.0

    async def replay(self, events: Sequence[dict], batch_size: int) -> None:
        for i in range(0, len(events), batch_size):
            await self.batch(events[i:i + batch_size])

    async def batch(self, events: Sequence[dict]) -> None:
        by_user: dict[str, list[dict]] = {}
        for e in events:
            by_user.setdefault(e["user_id"], []).append(e)
        t0, scoring = time.perf_counter(), self.source.seconds
        detector = self.detector
        t_store = time.perf_counter()
        got = await detector.exchange(by_user)
        t_store = time.perf_counter() - t_store
        prior: dict[str, float] = {}
        # the worker scores every prior window with its batch; here each score costs a model
        # call, so the ones the cooldown would drop anyway are skipped (same alerts)
        wanted = await detector.worth_scoring(detector.prior_windows(got.windows, by_user))
        if wanted:
            scores = self.source.score_many([p.window for p in wanted])
            prior = {p.purchase_id: s for p, s in zip(wanted, scores, strict=True)}
        detected = await detector.alerts(got, by_user, prior_scores=prior,
                                         model=self.source.model)
        self.candidates.update(a.kind for a in detected.candidates)
        self.emitted.extend(detected.emitted)
        await detector.confirm(detected.cooldown_updates)  # delivered at once, offline
        # detector time: everything since t0 except computing scores (the worker has them
        # from its batch's model call) and the window store's exchange
        self.detect_s += time.perf_counter() - t0 - t_store - (self.source.seconds - scoring)


def _score(alerts: Sequence[Alert], candidates: Mapping[str, int], events: Sequence[dict],
           labels: Mapping[str, Any]) -> dict[str, Any]:
    anomalies = labels.get("anomalies")
    if not isinstance(anomalies, list):
        raise ConfigError("labels have no 'anomalies' list (made by loadtest.inject_anomalies?)")
    owner: dict[str, int] = {}
    for n, a in enumerate(anomalies):
        for eid in a["event_ids"]:
            owner[eid] = n
    present = {e["event_id"] for e in events}
    clean = sum(1 for e in events if e["event_id"] not in owner)
    found: set[int] = set()
    kinds: dict[str, dict[str, Any]] = {}
    false_alerts: list[dict] = []
    for kind in KINDS:
        kinds[kind] = {"injected": 0, "detected": 0, "recall": None, "alerts": 0,
                       "candidates": candidates.get(kind, 0), "on_injected": 0,
                       "on_other_kind": 0, "false": 0, "false_per_10k_clean": 0.0,
                       "missed": []}
    for alert in alerts:
        row = kinds[alert.kind]
        row["alerts"] += 1
        hits = {owner[eid] for eid in alert.event_ids if eid in owner}
        same = {n for n in hits if anomalies[n]["kind"] == alert.kind}
        found |= same
        if same:
            row["on_injected"] += 1
        elif hits:
            row["on_other_kind"] += 1
        else:
            row["false"] += 1
            false_alerts.append(alert_record(alert))
    for n, a in enumerate(anomalies):
        row = kinds[a["kind"]]
        if not any(eid in present for eid in a["event_ids"]):
            continue  # not in this replay (a subset was given)
        row["injected"] += 1
        if n in found:
            row["detected"] += 1
        else:
            row["missed"].append(a["id"])
    for row in kinds.values():
        row["recall"] = round(row["detected"] / row["injected"], 4) if row["injected"] else None
        row["false_per_10k_clean"] = round(row["false"] / clean * 10_000, 3) if clean else 0.0
    total_false = sum(r["false"] for r in kinds.values())
    return {
        "kinds": kinds,
        "totals": {"events": len(events), "clean_events": clean,
                   "injected_events": len(events) - clean,
                   "alerts": len(alerts), "false": total_false,
                   "false_per_10k_clean": round(total_false / clean * 10_000, 3) if clean else 0.0},
        "false_alerts": false_alerts,
    }


def format_table(result: Mapping[str, Any]) -> str:
    """The per-kind table as plain text (what the command prints)."""
    cfg = result["thresholds"]
    used = {
        "purchase_velocity": (f">= {cfg['velocity_min_purchases']} purchases or >= "
                              f"{cfg['velocity_min_spend']:g} spend in "
                              f"{cfg['velocity_span_s']:g} s"),
        "bot_cadence": (f"last {cfg['bot_events']} events: median gap < "
                        f"{cfg['bot_max_median_gap_s']:g} s, or CV < {cfg['bot_max_cv']:g} "
                        f"with mean gap < {cfg['bot_max_mean_gap_s']:g} s"),
        OOC: (f"unseen product, >= {cfg['ooc_min_prior_events']} prior events, "
              f"prior score < {cfg['ooc_max_score']:g}"),
        "price_outlier": (f"|robust z| of ln price > {cfg['price_max_robust_z']:g}, >= "
                          f"{cfg['price_min_samples']} samples (last "
                          f"{cfg['price_stats_capacity']}), MAD floor "
                          f"{cfg['price_min_mad_log']:g}"),
    }
    head = (f"{'kind':<26} {'injected':>8} {'found':>6} {'recall':>7} {'alerts':>7} "
            f"{'other':>6} {'false':>6} {'false/10k':>9}  thresholds")
    lines = [head, "-" * len(head)]
    for kind, row in result["kinds"].items():
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        lines.append(f"{kind:<26} {row['injected']:>8} {row['detected']:>6} {recall:>7} "
                     f"{row['alerts']:>7} {row['on_other_kind']:>6} {row['false']:>6} "
                     f"{row['false_per_10k_clean']:>9.2f}  {used[kind]}")
    t = result["totals"]
    lines.append(f"{'all':<26} {'':>8} {'':>6} {'':>7} {t['alerts']:>7} {'':>6} {t['false']:>6} "
                 f"{t['false_per_10k_clean']:>9.2f}")
    lines.append(f"events {t['events']} ({t['clean_events']} clean, {t['injected_events']} "
                 f"injected); cooldown {cfg['cooldown_s']:g} s; batch size "
                 f"{result['settings']['batch_size']}; scores: {result['scorer']['description']}"
                 f"{' [fallback]' if result['scorer']['fallback'] else ''} "
                 f"({result['scorer']['windows_scored']} windows scored)")
    lines.append(f"detectors: {result['timing']['detectors_us_per_event']} us per event "
                 f"(pure Python, this replay)")
    return "\n".join(lines)


def _unique_sorted(events: Sequence[dict]) -> list[dict]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in by_event_time(events):
        key = (e["user_id"], e["event_id"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected name=value")
        out[name.strip()] = value.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker.evaluation.anomalies",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path, help="click events (JSON Lines), e.g. from "
                    "loadtest.inject_anomalies")
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--format", choices=("jsonl", "rees46"), default="jsonl")
    ap.add_argument("--scorer", choices=("model", "constant"), default="model",
                    help="prior intent scores: the model (default) or a constant")
    ap.add_argument("--model", type=Path, default=None, help="model dir (default: shipped)")
    ap.add_argument("--constant", type=float, default=0.0, help="score for --scorer constant")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--max-events", type=int, default=50)
    ap.add_argument("--window-seconds", type=int, default=3600)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="NAME=VALUE", help="override a threshold (repeatable)")
    ap.add_argument("--sweep", default=None, metavar="NAME=V1,V2,...",
                    help="also report recall and false alerts for each value of one threshold")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = ap.parse_args(argv)
    try:
        from worker.dataset.loading import load_events

        config = DetectorConfig.from_mapping(_overrides(args.overrides))
        events = load_events(args.events, args.format).events
        labels = orjson.loads(args.labels.read_bytes())
        source = (model_scores(args.model) if args.scorer == "model"
                  else constant_scores(args.constant))
        kw = {"max_events": args.max_events, "window_seconds": args.window_seconds,
              "batch_size": args.batch_size}
        result = evaluate_detectors(events, labels, config, source, **kw)
        print(format_table(result))
        if args.sweep:
            name, _, values = args.sweep.partition("=")
            result["sweep"] = {"threshold": name, "runs": []}
            print(f"\nsweep of {name}:")
            for value in values.split(","):
                cfg = DetectorConfig.from_mapping({**_overrides(args.overrides), name: value})
                r = evaluate_detectors(events, labels, cfg, source, **kw)
                row = {k: {"recall": v["recall"], "false": v["false"]}
                       for k, v in r["kinds"].items()}
                result["sweep"]["runs"].append({"value": value, "kinds": row})
                print(f"  {name}={value}: " + "; ".join(
                    f"{k} recall {v['recall']} false {v['false']}" for k, v in row.items()))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
