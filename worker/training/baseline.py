"""The GBDT baseline: scikit-learn's HistGradientBoostingClassifier on window features.

Features are the serving :func:`~worker.features.context_features` (the same features the
fusion model gets, its newest-product, session and recent-activity features included)
and, as native categorical
features, the newest event's category, top-level category and brand (values seen at
least :data:`MIN_CATEGORY_COUNT` times in training; the rest share one code): the text
encoder sees these names, so the baseline should too. Imbalance: ``class_weight=
"balanced"``, then the predictions are mapped back to the data's base rate (prior
correction ``p / (p + w (1 - p))``, ``w`` = the weight ratio), which leaves the ranking
alone and keeps the scores probabilities. Saved as ``baseline.joblib`` (a pickle: load
only directories you trust) + ``baseline.json``.
"""

from __future__ import annotations

import json
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

__all__ = ["BASELINE_FEATURE_NAMES", "CATEGORICAL_NAMES", "Baseline", "baseline_features",
           "fit_baseline", "load_baseline", "window_categories"]

MODEL_FILE = "baseline.joblib"
INFO_FILE = "baseline.json"
CATEGORICAL_NAMES: tuple[str, ...] = ("newest_category", "newest_category_top", "newest_brand")
BASELINE_FEATURE_NAMES = (*FEATURE_NAMES, *CATEGORICAL_NAMES)
NUMERIC_COUNT = len(FEATURE_NAMES)
MIN_CATEGORY_COUNT = 10
MAX_CATEGORIES = 200  # < max_bins (255): HistGradientBoosting's limit on categories
MISSING, OTHER = 0, 1  # codes of "no value" and "a value not in the vocabulary"
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 15, "min_samples_leaf": 20,
    "l2_regularization": 1.0, "n_iter_no_change": 30,
}


def baseline_features(window: Sequence[dict]) -> tuple[float, ...]:
    """The numeric features of a window: :data:`BASELINE_FEATURE_NAMES` without the
    categorical ones (see :func:`window_categories`), i.e. the serving context features."""
    return context_features(window)


def window_categories(window: Sequence[dict]) -> tuple[str | None, ...]:
    """The raw values of :data:`CATEGORICAL_NAMES` for a window (None when absent)."""
    newest = oldest_first(window)[-1]
    product = newest.get("product") or {}
    category, brand = product.get("category"), product.get("brand")
    category = category if isinstance(category, str) and category else None
    brand = brand.strip().lower() if isinstance(brand, str) and brand.strip() else None
    return category, category.split(".")[0] if category else None, brand


def fit_vocab(windows: Sequence[Sequence[dict]]) -> dict[str, list[str]]:
    """Per categorical feature, the values seen at least MIN_CATEGORY_COUNT times (most
    frequent first, at most MAX_CATEGORIES); value ``i`` gets code ``i + 2``."""
    counts: list[dict[str, int]] = [{} for _ in CATEGORICAL_NAMES]
    for window in windows:
        for c, value in zip(counts, window_categories(window), strict=True):
            if value is not None:
                c[value] = c.get(value, 0) + 1
    return {name: [v for v, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
                   if n >= MIN_CATEGORY_COUNT][:MAX_CATEGORIES]
            for name, c in zip(CATEGORICAL_NAMES, counts, strict=True)}


@dataclass(slots=True)
class Baseline:
    """A fitted baseline; ``predict_proba(windows)`` gives P(purchase) per window."""

    model: Any  # HistGradientBoostingClassifier
    vocab: dict[str, list[str]] = field(default_factory=dict)
    pos_weight: float = 1.0  # positive/negative weight ratio used in fitting (prior-corrected)
    feature_names: tuple[str, ...] = BASELINE_FEATURE_NAMES
    info: dict[str, Any] = field(default_factory=dict)

    def matrix(self, windows: Sequence[Sequence[dict]]) -> np.ndarray:
        """The feature matrix of windows, columns in :data:`BASELINE_FEATURE_NAMES`."""
        codes = [{v: i + 2 for i, v in enumerate(self.vocab.get(n, []))}
                 for n in CATEGORICAL_NAMES]
        rows = []
        for window in windows:
            cats = window_categories(window)
            rows.append((*baseline_features(window),
                         *(MISSING if v is None else c.get(v, OTHER)
                           for c, v in zip(codes, cats, strict=True))))
        return np.array(rows, dtype=float).reshape(len(rows), len(BASELINE_FEATURE_NAMES))

    def predict_proba(self, windows: Sequence[Sequence[dict]]) -> np.ndarray:
        if not windows:
            return np.zeros(0)
        return self.predict_features(self.matrix(windows))

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
                "categorical": list(CATEGORICAL_NAMES), "vocab": self.vocab,
                "pos_weight": self.pos_weight, **self.info}
        (directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def fit_baseline(train_examples: Sequence[Example], val_examples: Sequence[Example], *,
                 random_state: int = 0, stop_on: str = "average_precision",
                 threads: int | None = 1,
                 **params: Any) -> Baseline:
    """Fit on ``train_examples``, stop early on ``val_examples`` and keep the iterations up
    to the best validation score.

    ``stop_on``: ``average_precision`` (the default, the criterion the BERT head stops on,
    so the two are compared like for like; falls back to loss when val lacks a class) or
    ``loss`` (log loss, val weighted like train). On a few dozen positives, average
    precision may peak after a handful of trees whose scores hardly spread from the base
    rate: same ranking, but a Brier score near that of a constant. With no val examples:
    10% of train, by row.
    ``threads``: OpenMP threads while fitting (None: scikit-learn's default); one by default,
    since more save little on tens of thousands of rows and OpenMP's spinning threads made
    fits ten times slower on a busy machine. ``params`` override :data:`DEFAULT_PARAMS`.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    if stop_on not in ("loss", "average_precision"):
        raise ValueError(f"stop_on must be loss or average_precision, got {stop_on!r}")
    y = np.array([e.label for e in train_examples], dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the baseline needs both classes in the training examples")
    shell = Baseline(model=None, vocab=fit_vocab([e.window for e in train_examples]))
    x = shell.matrix([e.window for e in train_examples])
    x_val = shell.matrix([e.window for e in val_examples])
    y_val = np.array([e.label for e in val_examples], dtype=int)
    settings = {**DEFAULT_PARAMS, **params}
    mask = np.arange(len(BASELINE_FEATURE_NAMES)) >= NUMERIC_COUNT
    n_pos = int((y == 1).sum())
    pos_weight = float((len(y) - n_pos) / max(1, n_pos))  # "balanced": w(1) / w(0)
    fit_kwargs: dict[str, Any] = {}
    scoring = "loss"
    if len(y_val):
        fit_kwargs = {"X_val": x_val, "y_val": y_val,
                      "sample_weight_val": np.where(y_val == 1, pos_weight, 1.0)}
        if stop_on == "average_precision" and 0 < y_val.sum() < len(y_val):
            scoring = "average_precision"
            del fit_kwargs["sample_weight_val"]
    model = HistGradientBoostingClassifier(class_weight="balanced", early_stopping=True,
                                           scoring=scoring, random_state=random_state,
                                           categorical_features=mask, **settings)
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(x, y, **fit_kwargs)
        # Early stopping keeps the n_iter_no_change iterations after the best one; refit up
        # to the best (deterministic: no subsampling), as the BERT head restores its best.
        # On a plateau of the score take its last iteration (same ranking, sharper scores).
        scores = getattr(model, "validation_score_", None)
        best = model.n_iter_
        if fit_kwargs and scores is not None and len(scores):
            best = len(scores) - 1 - int(np.argmax(scores[::-1]))
        if 1 <= best < model.n_iter_:
            model.set_params(max_iter=best, early_stopping=False)
            model.fit(x, y)
    info = {"params": settings, "scoring": scoring, "random_state": random_state,
            "n_iter": int(model.n_iter_), "train_examples": int(len(y)),
            "val_examples": int(len(y_val))}
    return Baseline(model=model, vocab=shell.vocab, pos_weight=pos_weight, info=info)


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
    vocab = info.pop("vocab", {})
    info.pop("categorical", None)
    return Baseline(model=joblib.load(directory / MODEL_FILE), vocab=vocab,
                    pos_weight=pos_weight, feature_names=names, info=info)
