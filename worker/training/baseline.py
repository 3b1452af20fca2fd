"""The GBDT baseline: scikit-learn's HistGradientBoostingClassifier on window features.

Features are the serving :func:`~worker.features.context_features` plus a few about the
newest product and session (:data:`EXTRA_FEATURE_NAMES`). Imbalance: ``class_weight=
"balanced"``, then the predictions are mapped back to the data's base rate (prior
correction ``p / (p + w (1 - p))``, ``w`` = the weight ratio), which leaves the ranking
alone and keeps the scores probabilities. Saved as ``baseline.joblib`` (a pickle: load
only directories you trust) + ``baseline.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ModelError
from worker.features import FEATURE_NAMES, context_features
from worker.features.window import oldest_first
from worker.training.examples import Example

__all__ = ["BASELINE_FEATURE_NAMES", "Baseline", "baseline_features", "fit_baseline",
           "load_baseline"]

MODEL_FILE = "baseline.joblib"
INFO_FILE = "baseline.json"
EXTRA_FEATURE_NAMES: tuple[str, ...] = (
    "newest_is_view", "newest_is_cart", "newest_is_remove",
    "newest_product_views", "newest_product_carts", "newest_category_events",
    "session_events", "session_span_log_s", "sessions",
    "price_last_minus_mean_log", "newest_has_category", "newest_has_brand",
)
BASELINE_FEATURE_NAMES = (*FEATURE_NAMES, *EXTRA_FEATURE_NAMES)
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 15, "min_samples_leaf": 20,
    "l2_regularization": 1.0, "n_iter_no_change": 30,
}


def baseline_features(window: Sequence[dict]) -> tuple[float, ...]:
    """The features of a window, in the order of :data:`BASELINE_FEATURE_NAMES`."""
    events = oldest_first(window)
    newest = events[-1]
    product = newest.get("product") or {}
    pid, category = product.get("id"), product.get("category")
    same_product = [e for e in events
                    if pid is not None and (e.get("product") or {}).get("id") == pid]
    session = newest.get("session_id")
    in_session = [e for e in events if e.get("session_id") == session] if session else events
    base = context_features(events)
    price_last, price_mean = base[FEATURE_NAMES.index("price_last_log")], \
        base[FEATURE_NAMES.index("price_mean_log")]
    kind = newest["event_type"]
    return (
        *base,
        float(kind == "view"), float(kind == "add_to_cart"), float(kind == "remove_from_cart"),
        float(sum(e["event_type"] == "view" for e in same_product)),
        float(sum(e["event_type"] == "add_to_cart" for e in same_product)),
        float(sum(category is not None and (e.get("product") or {}).get("category") == category
                  for e in events)),
        float(len(in_session)),
        math.log1p((newest["ts"] - in_session[0]["ts"]) / 1000),
        float(len({e.get("session_id") for e in events})),
        price_last - price_mean,
        float(category is not None), float(product.get("brand") is not None),
    )


@dataclass(slots=True)
class Baseline:
    """A fitted baseline; ``predict_proba(windows)`` gives P(purchase) per window."""

    model: Any  # HistGradientBoostingClassifier
    pos_weight: float = 1.0  # positive/negative weight ratio used in fitting (prior-corrected)
    feature_names: tuple[str, ...] = BASELINE_FEATURE_NAMES
    info: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, windows: Sequence[Sequence[dict]]) -> np.ndarray:
        if not windows:
            return np.zeros(0)
        return self.predict_features(np.array([baseline_features(w) for w in windows]))

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            p = self.model.predict_proba(x)[:, 1]
        return p / (p + self.pos_weight * (1.0 - p))

    def save(self, directory: str | os.PathLike[str]) -> None:
        import joblib
        import sklearn

        directory = Path(directory)
        joblib.dump(self.model, directory / MODEL_FILE)
        info = {"kind": "sklearn.HistGradientBoostingClassifier",
                "sklearn_version": sklearn.__version__, "feature_names": list(self.feature_names),
                "pos_weight": self.pos_weight, **self.info}
        (directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def fit_baseline(train_examples: Sequence[Example], val_examples: Sequence[Example], *,
                 random_state: int = 0, threads: int | None = 1, **params: Any) -> Baseline:
    """Fit on ``train_examples``; stop early on ``val_examples`` (average precision when they
    hold both classes, else log loss; with no val examples, on 10% of train) and keep the
    iterations up to the best validation score.

    ``threads``: OpenMP threads while fitting (None: scikit-learn's default). One is the
    default: on tens of thousands of rows more threads save little, and on a busy machine
    OpenMP's spinning threads made a fit ten times slower. ``params`` override
    :data:`DEFAULT_PARAMS`.
    """
    x, y = _matrix(train_examples)
    if len(set(y.tolist())) < 2:
        raise ValueError("the baseline needs both classes in the training examples")
    return fit_baseline_arrays(x, y, *_matrix(val_examples), random_state=random_state,
                               threads=threads, **params)


def fit_baseline_arrays(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                        *, random_state: int = 0, threads: int | None = 1,
                        **params: Any) -> Baseline:
    """:func:`fit_baseline` on feature matrices (rows in :data:`BASELINE_FEATURE_NAMES`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    settings = {**DEFAULT_PARAMS, **params}
    fit_kwargs: dict[str, Any] = {}
    scoring = "loss"
    if len(y_val):
        fit_kwargs = {"X_val": x_val, "y_val": y_val}
        if 0 < y_val.sum() < len(y_val):
            scoring = "average_precision"
    model = HistGradientBoostingClassifier(class_weight="balanced", early_stopping=True,
                                           scoring=scoring, random_state=random_state,
                                           **settings)
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(x, y, **fit_kwargs)
        # Early stopping keeps the n_iter_no_change iterations after the best one; refit up
        # to the best (deterministic: no subsampling), as the BERT head restores its best.
        # On a plateau of the score take its last iteration (same ranking, sharper scores).
        scores = getattr(model, "validation_score_", None)
        best = model.n_iter_
        if fit_kwargs and scores is not None:
            best = len(scores) - 1 - int(np.argmax(scores[::-1]))
        if 1 <= best < model.n_iter_:
            model.set_params(max_iter=best, early_stopping=False)
            model.fit(x, y)
    pos_weight = float((y == 0).sum() / max(1, (y == 1).sum()))
    info = {"params": settings, "scoring": scoring, "random_state": random_state,
            "n_iter": int(model.n_iter_), "train_examples": int(len(y)),
            "val_examples": int(len(y_val))}
    return Baseline(model=model, pos_weight=pos_weight, info=info)


def load_baseline(directory: str | os.PathLike[str]) -> Baseline:
    """The baseline saved in a model directory (trusted directories only: a pickle)."""
    import joblib

    directory = Path(directory)
    info_file = directory / INFO_FILE
    if not info_file.is_file() or not (directory / MODEL_FILE).is_file():
        raise ModelError(f"{directory} has no {MODEL_FILE} + {INFO_FILE}")
    info = json.loads(info_file.read_text(encoding="utf-8"))
    names = tuple(info.pop("feature_names", ()))
    if names != BASELINE_FEATURE_NAMES:
        raise ModelError(f"{info_file}: feature_names differ from this version's baseline "
                         "features; retrain")
    pos_weight = float(info.pop("pos_weight", 1.0))
    return Baseline(model=joblib.load(directory / MODEL_FILE), pos_weight=pos_weight,
                    feature_names=names, info=info)


def _matrix(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([baseline_features(e.window) for e in examples], dtype=float)
    y = np.array([e.label for e in examples], dtype=int)
    return x.reshape(len(examples), len(BASELINE_FEATURE_NAMES)), y
