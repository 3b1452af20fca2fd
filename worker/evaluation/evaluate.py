"""``intent-worker evaluate``: replay events through the serving code and score them.

Events come from a file or from a topic range (read with its own consumer, never the
worker's group). They go through the same window, text and model code as the worker
(``worker.training.examples`` uses the worker's window store semantics,
``worker.features.build_input`` builds the text, ``IntentModel.score`` scores); the GBDT
baseline saved beside the model is scored on the same examples. Labels follow the model's
own label definition (horizon) and window settings, read from its ``config.json``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worker.errors import BadEvent, ConfigError
from worker.events import parse_event

log = logging.getLogger(__name__)

Users = Literal["all", "train", "val", "test"]


@dataclass(slots=True)
class Evaluation:
    report: Path
    metrics: dict[str, dict]
    meta: dict[str, Any]
    times: dict[str, float] = field(default_factory=dict)


async def events_from_topic(bootstrap: list[str], topic: str, *, from_ms: int | None, to_ms: int | None,
                            max_event_bytes: int, **client_opts: object) -> tuple[list[dict], dict[str, int]]:
    from worker.evaluation.replay import read_topic_range

    events: list[dict] = []
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    async for rec in read_topic_range(bootstrap, topic, from_ms=from_ms, to_ms=to_ms, **client_opts):
        try:
            event = parse_event(rec.value, max_bytes=max_event_bytes)
        except BadEvent as exc:
            rejected[exc.reason] += 1
            continue
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            events.append(event)
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events, dict(rejected)


def evaluate(events: list[dict], *, model_dir: Path, report_dir: Path, source: dict[str, Any],
             users: Users = "all", device: str = "auto", progress: bool = True) -> Evaluation:
    from worker.evaluation.report import write_report
    from worker.features import build_input
    from worker.model import load_model, read_config
    from worker.training.examples import build_examples
    from worker.training.split import user_split

    times: dict[str, float] = {}
    config = read_config(model_dir)
    extra = dict(config.extra)
    horizon_s = int(extra.get("label", {}).get("horizon_s", 600))
    window = extra.get("window", {})
    max_events = int(window.get("max_events", 50))
    window_seconds = int(window.get("seconds", 3600))
    t0 = time.perf_counter()
    examples = build_examples(events, horizon_s=horizon_s, max_events=max_events, window_seconds=window_seconds)
    split = extra.get("split", {})
    if users != "all":
        if not split:
            raise ConfigError(f"{model_dir}: the model records no user split; use --users all")
        examples = [e for e in examples if user_split(
            e.user_id, seed=split.get("seed", "intent-v1"), val_frac=float(split.get("val_frac", 0.2)),
            test_frac=float(split.get("test_frac", 0.0))) == users]
    if not examples:
        raise ConfigError("no labelled examples: the input is empty or shorter than the label horizon "
                          f"({horizon_s}s)")
    y = np.array([e.label for e in examples], dtype=int)
    times["examples_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = load_model(model_dir, device=device)
    inputs = [build_input(e.window, max_chars=model.max_chars) for e in examples]
    scores = _score(model, inputs, progress=progress)
    times["bert_s"] = time.perf_counter() - t0
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {"bert": (y, scores)}

    if (model_dir / "baseline.joblib").is_file():
        from worker.training.baseline import load_baseline

        t0 = time.perf_counter()
        baseline = load_baseline(model_dir)
        results["gbdt-baseline"] = (y, np.clip(baseline.predict_proba([e.window for e in examples]), 0, 1))
        times["baseline_s"] = time.perf_counter() - t0

    trained_on = extra.get("data", {}).get("fingerprint")
    meta = {
        "model": {"name": model.name, "version": model.version, "dir": str(model_dir)},
        "source": source,
        "label": extra.get("label", {"horizon_s": horizon_s}),
        "window": {"max_events": max_events, "seconds": window_seconds},
        "users": users,
        "examples": len(examples),
        "distinct_users": len({e.user_id for e in examples}),
        "includes_training_users": bool(users in ("all", "train") and trained_on
                                        and trained_on == source.get("fingerprint")),
        "times_s": {k: round(v, 2) for k, v in times.items()},
    }
    write_report(report_dir, results, title=f"intent model {model.name} {model.version}", meta=meta)
    import json

    metrics = json.loads((report_dir / "metrics.json").read_text())["models"]
    return Evaluation(report=report_dir / "index.html", metrics=metrics, meta=meta, times=times)


def _score(model: Any, inputs: list, *, progress: bool, chunk: int = 256) -> np.ndarray:
    from worker.training.progress import bar

    out: list[float] = []
    with bar(total=len(inputs), desc="scoring", unit="win", enabled=progress) as pb:
        for i in range(0, len(inputs), chunk):
            part = inputs[i:i + chunk]
            out.extend(model.score(part))
            pb.update(len(part))
    return np.asarray(out, dtype=float)
