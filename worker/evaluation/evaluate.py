"""``intent-worker evaluate``: replay events through the serving code and score them.

Events come from a file or from a topic range (read with its own consumer, never the
worker's group). They go through the same window, text and model code as the worker
(``worker.dataset.examples`` uses the worker's window store semantics,
``worker.features.build_input`` builds the text, ``IntentModel.score`` scores); the GBDT
baseline saved beside the model is scored on the same examples. Labels follow the model's
own label definition (horizon) and window settings, read from its ``config.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worker.dataset import (
    DEFAULT_HORIZON_S,
    DEFAULT_MAX_EVENTS,
    DEFAULT_WINDOW_SECONDS,
    LABEL_DEFINITION,
    bar,
    build_examples,
    user_split,
)
from worker.errors import ConfigError
from worker.model.config import LabelSection, ModelConfig, WindowSection

log = logging.getLogger(__name__)

Users = Literal["all", "train", "val", "test"]


@dataclass(slots=True)
class Evaluation:
    report: Path
    metrics: dict[str, dict]
    meta: dict[str, Any]
    times: dict[str, float] = field(default_factory=dict)


def evaluate(events: list[dict], *, model_dir: Path, report_dir: Path, source: dict[str, Any],
             users: Users = "all", device: str = "auto", progress: bool = True) -> Evaluation:
    from worker.evaluation.report import write_report
    from worker.features import build_input
    from worker.model import load_model, read_config

    times: dict[str, float] = {}
    config = read_config(model_dir)
    label, window = _label_and_window(config)
    t0 = time.perf_counter()
    examples = build_examples(events, horizon_s=label.horizon_s, max_events=window.max_events,
                              window_seconds=window.seconds)
    if users != "all":
        split = config.split
        if split is None:
            raise ConfigError(f"{model_dir}: the model records no user split; use --users all")
        examples = [e for e in examples if user_split(
            e.user_id, seed=split.seed, val_frac=split.val_frac,
            test_frac=split.test_frac) == users]
    if not examples:
        raise ConfigError("no labelled examples: the input is empty or shorter than the label "
                          f"horizon ({label.horizon_s}s)")
    y = np.array([e.label for e in examples], dtype=int)
    times["examples_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = load_model(model_dir, device=device)
    inputs = [build_input(e.window, max_chars=model.max_chars, phrase_price=model.phrase_price)
              for e in examples]
    scores = _score(model, inputs, progress=progress)
    times["bert_s"] = time.perf_counter() - t0
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {"bert": (y, scores)}

    if (model_dir / "baseline.joblib").is_file():
        from worker.training.baseline import load_baseline

        t0 = time.perf_counter()
        baseline = load_baseline(model_dir)
        scores = baseline.predict_proba([e.window for e in examples])
        results["gbdt-baseline"] = (y, np.clip(scores, 0, 1))
        times["baseline_s"] = time.perf_counter() - t0

    trained_on = config.data.fingerprint if config.data is not None else None
    meta = {
        "model": {"name": model.name, "version": model.version, "dir": str(model_dir)},
        "source": source,
        "label": label.to_json(),
        "window": window.to_json(),
        "users": users,
        "examples": len(examples),
        "distinct_users": len({e.user_id for e in examples}),
        "includes_training_users": bool(users in ("all", "train") and trained_on
                                        and trained_on == source.get("fingerprint")),
        "times_s": {k: round(v, 2) for k, v in times.items()},
    }
    examples_explained = _explained_examples(model, examples, inputs, y, results["bert"][1])
    write_report(report_dir, results, title=f"intent model {model.name} {model.version}", meta=meta,
                 explanations=examples_explained)
    import json

    metrics = json.loads((report_dir / "metrics.json").read_text())["models"]
    return Evaluation(report=report_dir / "index.html", metrics=metrics, meta=meta, times=times)


def _score(model: Any, inputs: list, *, progress: bool, chunk: int = 256) -> np.ndarray:
    out: list[float] = []
    with bar(total=len(inputs), desc="scoring", unit="win", enabled=progress) as pb:
        for i in range(0, len(inputs), chunk):
            part = inputs[i:i + chunk]
            out.extend(model.score(part))
            pb.update(len(part))
    return np.asarray(out, dtype=float)


def _label_and_window(config: ModelConfig) -> tuple[LabelSection, WindowSection]:
    """The label and window the model was trained with; a directory that records none (an
    untrained head) gets the dataset's defaults, the ones ``train`` uses."""
    label = config.label or LabelSection(horizon_s=DEFAULT_HORIZON_S, definition=LABEL_DEFINITION)
    window = config.window or WindowSection(max_events=DEFAULT_MAX_EVENTS,
                                            seconds=DEFAULT_WINDOW_SECONDS)
    return label, window


EXAMPLES_PER_GROUP = 3


def _explained_examples(model: Any, examples: list, inputs: list, y: np.ndarray,
                        scores: np.ndarray, per_group: int = EXAMPLES_PER_GROUP) -> list[dict]:
    """Explanations of a few examples for the report: the highest and lowest scores and the
    biggest errors (|label - score|); none for a model that cannot explain (the text kind)."""
    if not hasattr(model, "explain") or not len(scores):
        return []
    from worker.scoring.records import explained_window, explanation_record

    order = np.argsort(-scores, kind="stable")
    errors = np.argsort(-np.abs(y - scores), kind="stable")
    groups = [("highest score", order[:per_group]), ("lowest score", order[::-1][:per_group]),
              ("biggest error", errors[:per_group])]
    picked = [(name, int(i)) for name, idx in groups for i in idx]
    _, explanations = model.explain([inputs[i] for _, i in picked], top=5)
    out = []
    for (group, i), explanation in zip(picked, explanations, strict=True):
        window = examples[i].window
        record = explanation_record(explanation, window)
        out.append({"group": group, "user_id": examples[i].user_id, "label": int(y[i]),
                    "score": float(scores[i]), "window": explained_window(window, record),
                    "explanation": record})
    return out
