"""Binary-classifier metrics for intent scores, in plain numpy.

Everything here is pure and deterministic. The results are plain JSON types (float, int,
None, str, list, dict), so ``json.loads(json.dumps(m)) == m``.

Conventions (the traps are in the details):

- Scores are probabilities in [0, 1]; a sample is predicted positive when
  ``score >= threshold``. Tied scores form one threshold: they are never split.
- ``roc_auc`` is the trapezoidal area under the ROC curve (ties count one half, as in the
  Mann-Whitney statistic); ``pr_auc`` is average precision, the step-wise sum
  ``sum((R_i - R_{i-1}) * P_i)`` over distinct thresholds (no interpolation). Both match
  scikit-learn's ``roc_auc_score`` and ``average_precision_score``.
- ``precision_at_top_k["5%"]`` is the fraction of positives among the
  ``max(1, ceil(n * 5 / 100))`` highest scores; ties at the cut are broken by input order.
- ``ece`` uses ``n_bins`` equal-width bins; bin ``i`` holds the scores with
  ``floor(score * n_bins) == i`` (a score of exactly 1.0 goes to the last bin). So bins are
  closed on the left, open on the right; scikit-learn's ``calibration_curve`` closes them
  on the right instead, which only matters for scores that sit exactly on an edge.
- With one class only, ``roc_auc`` and ``pr_auc`` are ``None`` (undefined) and ``notes``
  says why; without positives ``best_f1`` and ``threshold`` are ``None`` too. With no samples
  at all every metric is ``None``. Nothing raises for these cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CalibrationBin",
    "calibration_bins",
    "compute_metrics",
    "pr_curve",
    "roc_curve",
]


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    lo: float
    hi: float
    count: int
    mean_score: float | None  # None for an empty bin
    positive_rate: float | None


def compute_metrics(y_true: Iterable, y_score: Iterable, *,
                    top_k_pcts: Sequence[float] = (1, 5, 10), n_bins: int = 10) -> dict:
    """All metrics of one model on one labelled set (see the module docstring).

    Returns ``{"roc_auc", "pr_auc", "best_f1", "threshold", "precision_at_top_k", "brier",
    "ece", "counts": {"n", "positives", "negatives", "positive_rate"}, "notes": [str]}``.
    Raises ``ValueError`` for malformed input: lengths differ, labels other than 0/1,
    scores that are not finite numbers in [0, 1], a bad ``top_k_pcts`` or ``n_bins``.
    """
    y, s = _check(y_true, y_score)
    pcts = _check_pcts(top_k_pcts)
    _check_bins(n_bins)
    n = int(y.size)
    positives = int(y.sum())
    negatives = n - positives
    counts = {
        "n": n,
        "positives": positives,
        "negatives": negatives,
        "positive_rate": positives / n if n else None,
    }
    notes: list[str] = []
    result: dict = {
        "roc_auc": None,
        "pr_auc": None,
        "best_f1": None,
        "threshold": None,
        "precision_at_top_k": {_pct_key(p): None for p in pcts},
        "brier": None,
        "ece": None,
        "counts": counts,
        "notes": notes,
    }
    if n == 0:
        notes.append("no samples: every metric is undefined")
        return result

    result["brier"] = float(np.mean((s - y) ** 2))
    result["ece"] = _ece(y, s, n_bins)
    order = np.argsort(-s, kind="stable")  # the one sort everything below shares
    result["precision_at_top_k"] = _precision_at_top(y[order], pcts)
    tps, fps, thresholds = _clf_curve(y, s, order)

    if positives == 0 or negatives == 0:
        only = "negatives" if positives == 0 else "positives"
        notes.append(f"only {only} (one class): roc_auc and pr_auc are undefined")
    else:
        result["roc_auc"] = _trapezoid(np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives])
        result["pr_auc"] = _average_precision(tps, fps)

    if positives == 0:
        notes.append("no positives: best_f1 and its threshold are undefined")
    else:
        precision = tps / (tps + fps)
        recall = tps / positives
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(tps > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = int(np.argmax(f1))  # first maximum: the highest threshold among equals
        result["best_f1"] = float(f1[best])
        result["threshold"] = float(thresholds[best])
    return result


def roc_curve(y_true: Iterable, y_score: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf; one point per distinct
    score, descending. Needs both classes (``ValueError`` otherwise)."""
    y, s = _check(y_true, y_score)
    tps, fps, thresholds = _clf_curve(y, s)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        raise ValueError("roc_curve needs both classes")
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def pr_curve(y_true: Iterable, y_score: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), one point per distinct score in ascending threshold
    order, then the conventional end point (precision 1, recall 0) as scikit-learn does.
    Needs at least one positive (``ValueError`` otherwise)."""
    y, s = _check(y_true, y_score)
    tps, fps, thresholds = _clf_curve(y, s)
    if tps.size == 0 or tps[-1] == 0:
        raise ValueError("pr_curve needs at least one positive")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return (np.concatenate([precision[::-1], [1.0]]), np.concatenate([recall[::-1], [0.0]]),
            thresholds[::-1].copy())


def calibration_bins(y_true: Iterable, y_score: Iterable, n_bins: int = 10) -> list[CalibrationBin]:
    """Equal-width reliability bins over [0, 1]; empty bins are kept (count 0, means None)."""
    y, s = _check(y_true, y_score)
    _check_bins(n_bins)
    ids = _bin_ids(s, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    score_sum = np.bincount(ids, weights=s, minlength=n_bins)
    pos_sum = np.bincount(ids, weights=y, minlength=n_bins)
    bins = []
    for i in range(n_bins):
        c = int(count[i])
        bins.append(CalibrationBin(
            lo=i / n_bins, hi=(i + 1) / n_bins, count=c,
            mean_score=float(score_sum[i] / c) if c else None,
            positive_rate=float(pos_sum[i] / c) if c else None,
        ))
    return bins


# -- internals ---------------------------------------------------------------------------


def _check(y_true: Iterable, y_score: Iterable) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true if isinstance(y_true, np.ndarray) else list(y_true))
    s = np.asarray(y_score if isinstance(y_score, np.ndarray) else list(y_score))
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true and y_score must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    if y.size and not (y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()):
        numeric = y.dtype.kind in "biuf"
        bad = [v for v in y.tolist() if v not in (0, 1)][:3] if numeric else y[:3].tolist()
        raise ValueError(f"y_true must hold only 0/1 (or booleans), found e.g. {bad}")
    if s.size and s.dtype.kind not in "biuf":
        raise ValueError(f"y_score must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if s.size and not (np.isfinite(s).all() and s.min() >= 0.0 and s.max() <= 1.0):
        bad = s[~(np.isfinite(s) & (s >= 0.0) & (s <= 1.0))][:3].tolist()
        raise ValueError(f"y_score must be probabilities in [0, 1], found e.g. {bad}")
    return y.astype(np.float64), s


def _check_pcts(pcts: Sequence[float]) -> list[float]:
    out = []
    for p in pcts:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
            raise ValueError(f"top_k_pcts must be percentages in (0, 100], got {p!r}")
        out.append(p)
    return out


def _check_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")


def _pct_key(p: float) -> str:
    return f"{p:g}%"


def _clf_curve(y: np.ndarray, s: np.ndarray,
               order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score, scores descending."""
    if order is None:
        order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    if not s.size:
        empty = np.array([], dtype=np.float64)
        return empty, empty, empty
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps, fps, s_sorted[last_of_run]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _average_precision(tps: np.ndarray, fps: np.ndarray) -> float:
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _precision_at_top(y_ranked: np.ndarray, pcts: list[float]) -> dict[str, float]:
    hits = np.cumsum(y_ranked)
    out = {}
    for p in pcts:
        # -1e-9 absorbs float dust: 7 * 100 / 100 may come out as 7.000000000000001
        k = max(1, math.ceil(y_ranked.size * p / 100 - 1e-9))
        out[_pct_key(p)] = float(hits[k - 1] / k)
    return out


def _bin_ids(s: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum(np.floor(s * n_bins).astype(np.int64), n_bins - 1)


def _ece(y: np.ndarray, s: np.ndarray, n_bins: int) -> float:
    ids = _bin_ids(s, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    gap = np.abs(np.bincount(ids, weights=s, minlength=n_bins)
                 - np.bincount(ids, weights=y, minlength=n_bins))
    # sum_b (n_b / n) * |mean_score_b - positive_rate_b| == sum_b |sum_s_b - sum_y_b| / n
    return float(gap.sum() / y.size) if count.sum() else 0.0
