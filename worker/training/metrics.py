"""Figures for training reports: counts, the shared metrics, user-bootstrap intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["binary_metrics", "count_summary", "paired_bootstrap", "paired_t"]


def binary_metrics(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> dict:
    """``n``, ``positives``, ``positive_rate``, ``roc_auc``, ``pr_auc`` (average precision)
    and ``brier``, from :func:`worker.dataset.metrics.compute_metrics` (one definition of
    each figure); the AUCs are None when ``y`` holds a single class."""
    from worker.dataset.metrics import compute_metrics

    y = np.asarray(y, dtype=int)
    out: dict = {"n": int(len(y)), "positives": int(y.sum()),
                 "positive_rate": float(y.mean()) if len(y) else None,
                 "roc_auc": None, "pr_auc": None, "brier": None}
    if len(y):
        m = compute_metrics(y, np.clip(np.asarray(p, dtype=float), 0.0, 1.0))
        out.update(roc_auc=m["roc_auc"], pr_auc=m["pr_auc"], brier=m["brier"])
    return out


def count_summary(labels: Sequence[int], users: Sequence[str]) -> dict:
    """Examples, positives, positive rate and distinct users of one part."""
    n = len(labels)
    pos = int(sum(labels))
    return {"examples": n, "positives": pos, "positive_rate": pos / n if n else None,
            "users": len(set(users))}


def paired_bootstrap(y: Sequence[int], scores: Mapping[str, Sequence[float]],
                     users: Sequence[str], *, rounds: int = 500, seed: int = 0,
                     metrics: Sequence[str] = ("pr_auc",)) -> dict:
    """95% intervals of each model's metrics and of the difference of the first two,
    resampling *users* (their examples move together), the same resamples for every model
    and every metric.

    ``metrics`` names the figures: ``pr_auc`` (average precision), ``roc_auc``, ``brier``
    (lower is better). Keys: ``{model}_{metric}_ci95`` and
    ``{metric}_diff_{first}_minus_{second}_ci95``; ``p_diff_le_0`` is the share of resamples
    where the PR-AUC difference is <= 0 (only when ``pr_auc`` is asked for). Resamples with a
    single class are skipped; ``{}`` when the data holds a single class."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    figures = {"pr_auc": average_precision_score, "roc_auc": roc_auc_score,
               "brier": lambda yy, ss: float(np.mean((ss - yy) ** 2))}
    unknown = [m for m in metrics if m not in figures]
    if unknown or not metrics:
        raise ValueError(f"metrics must be some of {sorted(figures)}, got {list(metrics)}")
    y = np.asarray(y, dtype=int)
    names = list(scores)
    arrays = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
    index: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        index.setdefault(u, []).append(i)
    groups = [np.asarray(v) for v in index.values()]
    if not groups or not 0 < y.sum() < len(y):
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[tuple[str, str], list[float]] = {(k, m): [] for m in metrics for k in names}
    diffs: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(rounds):
        pick = np.concatenate([groups[j] for j in rng.integers(0, len(groups), len(groups))])
        yy = y[pick]
        if not 0 < yy.sum() < len(yy):
            continue
        for m in metrics:
            values = [float(figures[m](yy, arrays[k][pick])) for k in names]
            for k, v in zip(names, values, strict=True):
                draws[(k, m)].append(v)
            if len(values) >= 2:
                diffs[m].append(values[0] - values[1])
    out = {f"{k}_{m}_ci95": _interval(v) for (k, m), v in draws.items()}
    for m in metrics:
        if diffs[m]:
            out[f"{m}_diff_{names[0]}_minus_{names[1]}_ci95"] = _interval(diffs[m])
    if diffs.get("pr_auc"):
        out["p_diff_le_0"] = float(np.mean(np.asarray(diffs["pr_auc"]) <= 0))
    out["rounds"] = rounds
    return out


def _interval(values: Sequence[float]) -> list[float] | None:
    if not values:
        return None
    lo, hi = np.percentile(np.asarray(values), [2.5, 97.5])
    return [float(lo), float(hi)]


def paired_t(diffs: Sequence[float] | np.ndarray) -> dict:
    """Paired differences over splits or folds: ``mean``, ``sd``, the 95 % Student t interval
    of the mean (``ci95``; None for fewer than two), ``won`` (how many > 0) and ``n``. The
    splits share data, so the interval is indicative, not exact."""
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=float)
    n = len(d)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    ci95 = None
    if n > 1:
        half = float(student_t.ppf(0.975, n - 1)) * sd / float(np.sqrt(n))
        ci95 = [mean - half, mean + half]
    return {"mean": mean, "sd": sd, "ci95": ci95, "won": int((d > 0).sum()), "n": n}
