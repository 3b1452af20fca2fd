"""worker.training.metrics.paired_bootstrap: PR-AUC by default, ROC-AUC and Brier on request,
from the same user resamples."""

from __future__ import annotations

import numpy as np
import pytest

from worker.training.metrics import paired_bootstrap


def _data() -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    a = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    return y, {"a": a, "b": rng.random(300)}, [f"u{i % 40}" for i in range(300)]


def test_default_is_pr_auc_only() -> None:
    y, scores, users = _data()
    out = paired_bootstrap(y, scores, users, rounds=100, seed=3)
    assert set(out) == {"a_pr_auc_ci95", "b_pr_auc_ci95", "pr_auc_diff_a_minus_b_ci95",
                        "p_diff_le_0", "rounds"}


def test_more_metrics_leave_the_pr_auc_figures_unchanged() -> None:
    y, scores, users = _data()
    default = paired_bootstrap(y, scores, users, rounds=100, seed=3)
    more = paired_bootstrap(y, scores, users, rounds=100, seed=3,
                            metrics=("pr_auc", "roc_auc", "brier"))
    assert {k: more[k] for k in default} == default
    lo, hi = more["brier_diff_a_minus_b_ci95"]
    assert lo < hi < 0  # a is the better-calibrated model: its Brier is lower
    assert more["roc_auc_diff_a_minus_b_ci95"][0] > 0
    brier_a = float(np.mean((scores["a"] - y) ** 2))
    assert more["a_brier_ci95"][0] < brier_a < more["a_brier_ci95"][1]


def test_unknown_metric_is_refused() -> None:
    y, scores, users = _data()
    with pytest.raises(ValueError, match="metrics must be"):
        paired_bootstrap(y, scores, users, metrics=("f1",))
