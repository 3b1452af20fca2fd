"""worker.dataset.metrics: hand-computed values, degenerate inputs, agreement with sklearn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from worker.dataset.metrics import calibration_bins, compute_metrics, pr_curve, roc_curve

# The classic 4-sample example. Sorted by score: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0).
Y = [0, 0, 1, 1]
S = [0.1, 0.4, 0.35, 0.8]


def test_perfect_ranking() -> None:
    m = compute_metrics([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    assert m["roc_auc"] == 1.0
    assert m["pr_auc"] == 1.0
    assert m["best_f1"] == 1.0
    assert m["threshold"] == 0.7  # the lowest positive score: predict positive when >= 0.7
    assert m["counts"] == {"n": 5, "positives": 2, "negatives": 3, "positive_rate": 0.4}
    assert m["notes"] == []


def test_reversed_ranking() -> None:
    m = compute_metrics([1, 1, 0, 0], [0.1, 0.2, 0.7, 0.9])
    assert m["roc_auc"] == 0.0
    # precision at recall steps: 1/3 at 0.2, 2/4 at 0.1 -> AP = .5 * 1/3 + .5 * 2/4
    assert m["pr_auc"] == pytest.approx(0.5 / 3 + 0.25)


def test_hand_computed_example() -> None:
    m = compute_metrics(Y, S, top_k_pcts=(25, 50, 100), n_bins=10)
    # pairs (pos, neg) ranked right: (0.8, 0.1), (0.8, 0.4), (0.35, 0.1); wrong: (0.35, 0.4)
    assert m["roc_auc"] == pytest.approx(0.75)
    # thresholds 0.8: P=1, R=.5; 0.4: P=.5, R=.5; 0.35: P=2/3, R=1; 0.1: P=.5, R=1
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    # F1 per threshold: 2/3, 1/2, 4/5, 2/3
    assert m["best_f1"] == pytest.approx(0.8)
    assert m["threshold"] == 0.35
    assert m["precision_at_top_k"] == {"25%": 1.0, "50%": 0.5, "100%": 0.5}
    # Brier: (.1^2 + .4^2 + .65^2 + .2^2) / 4
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # 10 bins: each score alone in its bin -> gaps .1, .4, .65, .2, each weighted 1/4
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)


def test_ece_two_bins_weighted_by_count() -> None:
    m = compute_metrics(Y, S, n_bins=2)
    # [0, .5): .1, .4, .35 -> mean .85/3, 1 positive of 3 -> gap .05, weight 3/4
    # [.5, 1]: .8 -> mean .8, positive rate 1 -> gap .2, weight 1/4
    assert m["ece"] == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)


def test_bin_edges_closed_left_and_one_in_last_bin() -> None:
    bins = calibration_bins([0, 1, 1, 0], [0.0, 0.5, 1.0, 0.49999], n_bins=2)
    assert [b.count for b in bins] == [2, 2]
    assert bins[0].mean_score == pytest.approx(0.249995)
    assert bins[1].positive_rate == 1.0
    # .3 * 10 is 3.0000000000000004 in floats; it still belongs to bin 3
    assert [b.count for b in calibration_bins([1], [0.3])][3] == 1


def test_all_tied_scores() -> None:
    m = compute_metrics([0, 1, 0, 1], [0.5] * 4, top_k_pcts=(50,))
    assert m["roc_auc"] == 0.5
    assert m["pr_auc"] == 0.5
    assert m["best_f1"] == pytest.approx(2 / 3)  # one threshold only: all predicted positive
    assert m["threshold"] == 0.5
    assert m["precision_at_top_k"] == {"50%": 0.5}  # ties broken by input order: [0, 1]
    assert m["ece"] == 0.0 and m["brier"] == 0.25


def test_top_k_rounds_up_and_keeps_at_least_one() -> None:
    y = [1] + [0] * 199
    s = np.linspace(1.0, 0.0, 200)
    m = compute_metrics(y, s, top_k_pcts=(0.1, 1, 5, 10))
    assert m["precision_at_top_k"] == {"0.1%": 1.0, "1%": 0.5, "5%": 0.1, "10%": 0.05}


@pytest.mark.parametrize(("labels", "only"), [([0, 0, 0], "negatives"), ([1, 1, 1], "positives")])
def test_one_class_only_gives_null_aucs_with_a_note(labels: list[int], only: str) -> None:
    m = compute_metrics(labels, [0.2, 0.5, 0.9])
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert any(only in note and "roc_auc" in note for note in m["notes"])
    assert m["brier"] is not None and m["ece"] is not None
    if only == "negatives":
        assert m["best_f1"] is None and m["threshold"] is None
        assert m["precision_at_top_k"]["10%"] == 0.0
    else:
        assert m["best_f1"] == 1.0 and m["threshold"] == 0.2
    assert json.loads(json.dumps(m)) == m


def test_no_samples() -> None:
    m = compute_metrics([], [])
    assert m["counts"] == {"n": 0, "positives": 0, "negatives": 0, "positive_rate": None}
    assert all(m[k] is None for k in ("roc_auc", "pr_auc", "best_f1", "threshold", "brier", "ece"))
    assert m["precision_at_top_k"] == {"1%": None, "5%": None, "10%": None}
    assert m["notes"]


def test_accepts_booleans_and_numpy() -> None:
    a = compute_metrics(np.array([False, True, True]), np.array([0.2, 0.6, 0.9], dtype=np.float32))
    b = compute_metrics([0, 1, 1], [float(np.float32(x)) for x in (0.2, 0.6, 0.9)])
    assert a == b


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 1], [0.5], "2 values"),
        ([0, 2], [0.1, 0.2], "0/1"),
        (["a", "b"], [0.1, 0.2], "0/1"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1, float("nan")], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.2], r"\[0, 1\]"),
    ],
)
def test_rejects_malformed_input(y: list, s: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(y, s)


@pytest.mark.parametrize("kwargs", [{"top_k_pcts": (0,)}, {"top_k_pcts": (101,)}, {"n_bins": 0}])
def test_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        compute_metrics(Y, S, **kwargs)


def test_result_is_plain_json() -> None:
    m = compute_metrics(Y, S)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert set(m) == {"roc_auc", "pr_auc", "best_f1", "threshold", "precision_at_top_k", "brier",
                      "ece", "counts", "notes"}


def test_curves_end_points() -> None:
    fpr, tpr, thr = roc_curve(Y, S)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert math.isinf(thr[0])
    precision, recall, _ = pr_curve(Y, S)
    assert (precision[-1], recall[-1]) == (1.0, 0.0)
    assert recall[0] == 1.0
    with pytest.raises(ValueError):
        roc_curve([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError):
        pr_curve([0, 0], [0.1, 0.2])


# -- agreement with scikit-learn ---------------------------------------------------------

@pytest.fixture
def sk():
    """scikit-learn's metrics, for cross-checks only (the module itself is pure numpy)."""
    return pytest.importorskip("sklearn.metrics")


def _data(seed: int, n: int, rate: float, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    y[0], y[1] = 0, 1  # both classes
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    if decimals is not None:  # many ties
        s = np.round(s, decimals)
    return y, s


@pytest.mark.parametrize(("seed", "n", "rate", "decimals"),
                         [(1, 50, 0.3, None), (2, 1000, 0.05, None), (3, 2000, 0.2, 1),
                          (4, 500, 0.5, 2), (5, 7, 0.5, None)])
def test_agrees_with_sklearn(sk, seed: int, n: int, rate: float, decimals: int | None) -> None:
    y, s = _data(seed, n, rate, decimals)
    m = compute_metrics(y, s)
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
    assert m["brier"] == pytest.approx(sk.brier_score_loss(y, s), abs=1e-12)

    precision, recall, thresholds = sk.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    assert m["best_f1"] == pytest.approx(f1.max(), abs=1e-12)
    assert m["threshold"] in set(thresholds[np.isclose(f1, f1.max(), rtol=0, atol=1e-12)].tolist())
    predicted = (s >= m["threshold"]).astype(int)
    assert sk.f1_score(y, predicted) == pytest.approx(m["best_f1"], abs=1e-12)

    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert sk.auc(fpr, tpr) == pytest.approx(m["roc_auc"], abs=1e-12)
    ours_p, ours_r, ours_t = pr_curve(y, s)
    np.testing.assert_allclose(ours_p, precision)
    np.testing.assert_allclose(ours_r, recall)
    np.testing.assert_allclose(ours_t, thresholds)


def test_ece_agrees_with_sklearn_calibration_curve_and_brute_force() -> None:
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve

    y, s = _data(11, 3000, 0.3, None)  # continuous: no score on a bin edge
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    full = [b for b in calibration_bins(y, s, 10) if b.count]
    np.testing.assert_allclose([b.positive_rate for b in full], prob_true)
    np.testing.assert_allclose([b.mean_score for b in full], prob_pred)

    brute = 0.0
    for i in range(10):
        lo, hi = i / 10, (i + 1) / 10
        inside = (s >= lo) & ((s < hi) if i < 9 else (s <= hi))
        if inside.any():
            brute += inside.mean() * abs(s[inside].mean() - y[inside].mean())
    assert compute_metrics(y, s)["ece"] == pytest.approx(brute, abs=1e-12)


def test_precision_at_top_k_agrees_with_sklearn_top_k_via_precision_score(sk) -> None:
    y, s = _data(12, 1000, 0.1, None)  # no ties
    m = compute_metrics(y, s, top_k_pcts=(1, 5, 10))
    for pct, k in (("1%", 10), ("5%", 50), ("10%", 100)):
        cut = np.sort(s)[::-1][k - 1]
        assert m["precision_at_top_k"][pct] == pytest.approx(sk.precision_score(y, s >= cut))
