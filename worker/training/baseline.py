"""The GBDT baseline: scikit-learn's HistGradientBoostingClassifier on window features.

Features are the serving :func:`~worker.features.context_features` (the same features the
fusion model gets, its newest-product, session and recent-activity features included)
and, as native categorical
features, the newest event's category, top-level category and brand (values seen at
least :data:`MIN_CATEGORY_COUNT` times in training; the rest share one code): the text
encoder sees these names, so the baseline should too. Imbalance: ``class_weight=
"balanced"``, then the predictions are mapped back to the data's base rate (prior
correction ``p / (p + w (1 - p))``, ``w`` = the weight ratio), which leaves the ranking
alone and keeps the scores probabilities. The number of trees is chosen on an inner split of
the training users (:func:`fit_baseline`), never on the users it is scored on. Saved as
``baseline.joblib`` (a pickle: load only directories you trust) + ``baseline.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset.examples import Example
from worker.dataset.split import DEFAULT_SPLIT_SEED, INNER_FRAC, inner_user_split
from worker.errors import ModelError
from worker.features import FEATURE_NAMES, context_features
from worker.features.window import oldest_first
from worker.training.metrics import count_summary

__all__ = ["BASELINE_FEATURE_NAMES", "CATEGORICAL_NAMES", "Baseline", "baseline_features",
           "fit_baseline", "fit_baseline_stopped_on", "load_baseline", "window_categories"]

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


def fit_baseline(fit_examples: Sequence[Example], *, split_seed: str = DEFAULT_SPLIT_SEED,
                 inner_frac: float = INNER_FRAC, random_state: int = 0,
                 stop_on: str = "average_precision", threads: int | None = 1,
                 **params: Any) -> Baseline:
    """Fit on ``fit_examples`` alone: the number of trees is chosen on an inner split of
    their users, then the model is refitted on all of them with that many trees.

    The inner split (:func:`~worker.dataset.split.inner_user_split`, seed ``split_seed``,
    about ``inner_frac`` of the users held out, never by row: a user's examples stay on
    one side) early-stops a probe fit on the other users (see :func:`fit_baseline_stopped_on`
    for ``stop_on``). There is deliberately no argument for validation examples: whatever
    this baseline is scored on cannot have chosen anything for it, as for the linear head,
    which fits on the training users alone.

    Refit rather than keep the probe: the probe saw only part of the training users, the
    BERT head fits on all of them, and the tree
    count is the only thing the held-out users are needed for; without subsampling the
    refit is deterministic. The refit's vocabulary and class weights come from all fit
    users. When the inner split cannot stop anything (no held-out user, or one side without
    both classes) the model gets ``max_iter`` trees and ``info["stopped_on"]`` says so.
    ``params`` override :data:`DEFAULT_PARAMS`; ``threads`` as in
    :func:`fit_baseline_stopped_on`.
    """
    _check_classes(fit_examples)
    settings = {**DEFAULT_PARAMS, **params}
    inner_fit, hold = inner_user_split(fit_examples, seed=split_seed, frac=inner_frac)
    held_users = len({e.user_id for e in hold})
    inner_fit_labels = {e.label for e in inner_fit}
    if hold and inner_fit_labels == {0, 1}:
        probe = fit_baseline_stopped_on(inner_fit, hold, random_state=random_state,
                                        stop_on=stop_on, threads=threads, refit=False,
                                        **params)
        n_iter, scoring = probe.info["n_iter"], probe.info["scoring"]
        stopped_on = f"inner split of training users ({held_users} users)"
    else:
        n_iter, scoring = int(settings["max_iter"]), None
        stopped_on = (f"nothing: the inner split of training users ({held_users} users held "
                      f"out) cannot stop early; max_iter {n_iter} trees")
    model = _fit_fixed(fit_examples, n_iter, random_state=random_state, threads=threads,
                       settings=settings)
    model.info.update({
        "scoring": scoring, "stopped_on": stopped_on,
        "inner_split": {"seed": f"{split_seed}/inner", "frac": inner_frac,
                        "fit": count_summary([e.label for e in inner_fit],
                                             [e.user_id for e in inner_fit]),
                        "stop": count_summary([e.label for e in hold],
                                              [e.user_id for e in hold])}})
    return model


def fit_baseline_stopped_on(train_examples: Sequence[Example],
                            stop_examples: Sequence[Example], *, random_state: int = 0,
                            stop_on: str = "average_precision", threads: int | None = 1,
                            refit: bool = True, **params: Any) -> Baseline:
    """Fit on ``train_examples``, stop early on ``stop_examples`` and keep the iterations up
    to the best score there (``info["n_iter"]``).

    The stopping examples choose the model: never score it on them (that is what
    :func:`fit_baseline` avoids; ``loadtest.head_compare`` keeps this one to show the
    optimism of stopping on the scored users).

    ``stop_on``: ``average_precision`` (the default; falls back to loss when the stopping
    examples lack a class) or ``loss`` (log loss, weighted like train). On a few dozen
    positives, average precision may peak after a handful of trees whose scores hardly
    spread from the base rate: same ranking, but a Brier score near that of a constant.
    ``refit`` False: ``info["n_iter"]`` is the best count but the model keeps the
    ``n_iter_no_change`` trees after it (saves a fit when only the count is wanted).
    ``threads``: OpenMP threads while fitting (None: scikit-learn's default); one by default,
    since more save little on tens of thousands of rows and OpenMP's spinning threads slow
    fits down badly on a busy machine. ``params`` override :data:`DEFAULT_PARAMS`.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    if stop_on not in ("loss", "average_precision"):
        raise ValueError(f"stop_on must be loss or average_precision, got {stop_on!r}")
    if not stop_examples:
        raise ValueError("early stopping needs stopping examples")
    y = _check_classes(train_examples)
    shell = Baseline(model=None, vocab=fit_vocab([e.window for e in train_examples]))
    x = shell.matrix([e.window for e in train_examples])
    x_val = shell.matrix([e.window for e in stop_examples])
    y_val = np.array([e.label for e in stop_examples], dtype=int)
    settings = {**DEFAULT_PARAMS, **params}
    pos_weight = _pos_weight(y)
    fit_kwargs: dict[str, Any] = {"X_val": x_val, "y_val": y_val,
                                  "sample_weight_val": np.where(y_val == 1, pos_weight, 1.0)}
    scoring = "loss"
    if stop_on == "average_precision" and 0 < y_val.sum() < len(y_val):
        scoring = "average_precision"
        del fit_kwargs["sample_weight_val"]
    model = HistGradientBoostingClassifier(class_weight="balanced", early_stopping=True,
                                           scoring=scoring, random_state=random_state,
                                           categorical_features=_categorical_mask(),
                                           **settings)
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(x, y, **fit_kwargs)
        # Early stopping keeps the n_iter_no_change iterations after the best one; refit up
        # to the best (deterministic: no subsampling), as the BERT head restores its best.
        # On a plateau of the score take its last iteration (same ranking, sharper scores).
        # validation_score_[i] is the score after i trees; at least one tree.
        scores = model.validation_score_
        best = max(1, len(scores) - 1 - int(np.argmax(scores[::-1])))
        if refit and best < model.n_iter_:
            model.set_params(max_iter=best, early_stopping=False)
            model.fit(x, y)
    info = {"params": settings, "scoring": scoring, "random_state": random_state,
            "n_iter": best, "train_examples": int(len(y)),
            "stop_examples": int(len(y_val))}
    return Baseline(model=model, vocab=shell.vocab, pos_weight=pos_weight, info=info)


def _fit_fixed(examples: Sequence[Example], n_iter: int, *, random_state: int,
               threads: int | None, settings: dict[str, Any]) -> Baseline:
    """``n_iter`` trees on all ``examples``, no early stopping."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    y = _check_classes(examples)
    shell = Baseline(model=None, vocab=fit_vocab([e.window for e in examples]))
    x = shell.matrix([e.window for e in examples])
    model = HistGradientBoostingClassifier(class_weight="balanced", early_stopping=False,
                                           random_state=random_state,
                                           categorical_features=_categorical_mask(),
                                           **{**settings, "max_iter": n_iter})
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(x, y)
    info = {"params": settings, "random_state": random_state, "n_iter": int(model.n_iter_),
            "train_examples": int(len(y))}
    return Baseline(model=model, vocab=shell.vocab, pos_weight=_pos_weight(y), info=info)


def _check_classes(examples: Sequence[Example]) -> np.ndarray:
    y = np.array([e.label for e in examples], dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the baseline needs both classes in the training examples")
    return y


def _pos_weight(y: np.ndarray) -> float:
    """``class_weight="balanced"``'s w(1) / w(0): negatives per positive."""
    n_pos = int((y == 1).sum())
    return float((len(y) - n_pos) / max(1, n_pos))


def _categorical_mask() -> np.ndarray:
    return np.arange(len(BASELINE_FEATURE_NAMES)) >= NUMERIC_COUNT


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
