"""worker.outcomes.live: rolling live quality and drift per (model, version, role)."""

from __future__ import annotations

import math
import random

import pytest

from worker.dataset.metrics import compute_metrics
from worker.outcomes.live import IDLE_S, MAX_KEYS, LiveFigures, LiveQuality


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReference:
    """PSI = the mean of the scores it is given, so a test can tell which scores it saw."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []

    def psi(self, scores) -> float:
        self.calls.append(list(scores))
        return sum(scores) / len(scores)


def only(live: LiveQuality) -> LiveFigures:
    (figures,) = live.figures()
    return figures


def test_perfect_ranking_gives_pr_auc_and_roc_auc_of_one() -> None:
    live = LiveQuality(window=100)
    live.add_outcomes("m", "1", "champion", [0.1, 0.2, 0.3, 0.7, 0.9], [0, 0, 0, 1, 1])
    f = only(live)
    assert (f.model, f.version, f.role) == ("m", "1", "champion")
    assert f.pr_auc == 1.0 and f.roc_auc == 1.0
    assert (f.outcomes, f.positives, f.outcomes_total) == (5, 2, 5)


def test_figures_are_those_of_the_offline_metrics_on_the_same_pairs() -> None:
    rng = random.Random(7)
    scores = [rng.random() for _ in range(500)]
    labels = [int(rng.random() < s * 0.6) for s in scores]
    live = LiveQuality(window=1000)
    for i in range(0, 500, 37):  # in batches, as the worker adds them
        live.add_outcomes("m", "1", "champion", scores[i:i + 37], labels[i:i + 37])
    f = only(live)
    offline = compute_metrics(labels, scores)
    assert f.pr_auc == offline["pr_auc"]
    assert f.roc_auc == offline["roc_auc"]
    assert f.brier == offline["brier"]
    assert f.ece == offline["ece"]
    assert f.positives == offline["counts"]["positives"]


def test_the_window_keeps_only_the_last_outcomes() -> None:
    live = LiveQuality(window=4)
    live.add_outcomes("m", "1", "champion", [0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])  # all wrong
    assert only(live).roc_auc == 0.0
    live.add_outcomes("m", "1", "champion", [0.1, 0.2, 0.8], [0, 0, 1])
    live.add_outcomes("m", "1", "champion", [0.9], [1])
    f = only(live)
    assert f.roc_auc == 1.0 and f.pr_auc == 1.0  # the old four are forgotten
    assert (f.outcomes, f.positives, f.outcomes_total) == (4, 2, 8)


def test_one_class_leaves_the_ranking_figures_undefined_but_not_the_others() -> None:
    live = LiveQuality(window=10)
    live.add_outcomes("m", "1", "champion", [0.2, 0.4], [0, 0])
    f = only(live)
    assert math.isnan(f.pr_auc) and math.isnan(f.roc_auc)
    assert f.brier == pytest.approx((0.04 + 0.16) / 2)
    assert f.ece == pytest.approx(0.3)


def test_scores_alone_give_a_key_with_no_outcome_figures() -> None:
    live = LiveQuality(window=10)
    live.add_scores("m", "1", "champion", [0.5])
    f = only(live)
    assert (f.outcomes, f.scores_total) == (0, 1)
    assert all(math.isnan(x) for x in (f.pr_auc, f.roc_auc, f.brier, f.ece, f.psi))


def test_psi_is_the_reference_s_on_the_last_score_window_scores() -> None:
    ref = FakeReference()
    live = LiveQuality(window=10, score_window=3)
    live.set_reference("m", "1", ref)
    live.add_scores("m", "1", "champion", [0.9, 0.9])
    live.add_scores("m", "1", "champion", [0.1, 0.2, 0.3])
    f = only(live)
    assert ref.calls == [[0.1, 0.2, 0.3]]
    assert f.psi == pytest.approx(0.2)
    assert f.scores_total == 5


def test_psi_is_nan_without_a_reference_of_that_version() -> None:
    live = LiveQuality(window=10)
    live.set_reference("m", "1", FakeReference())
    live.add_scores("m", "2", "champion", [0.5])
    assert math.isnan(only(live).psi)


def test_a_reference_set_later_or_removed_changes_the_figures() -> None:
    live = LiveQuality(window=10)
    live.add_scores("m", "1", "champion", [0.4])
    assert math.isnan(only(live).psi)
    live.set_reference("m", "1", FakeReference())
    assert only(live).psi == pytest.approx(0.4)
    live.set_reference("m", "1", None)
    assert math.isnan(only(live).psi)


def test_champion_and_shadow_are_kept_apart() -> None:
    live = LiveQuality(window=10)
    live.add_outcomes("m", "1", "champion", [0.1, 0.9], [0, 1])
    live.add_outcomes("c", "2", "shadow", [0.9, 0.1], [0, 1])
    by_role = {f.role: f for f in live.figures()}
    assert by_role["champion"].roc_auc == 1.0 and by_role["shadow"].roc_auc == 0.0
    assert (by_role["shadow"].model, by_role["shadow"].version) == ("c", "2")


def test_figures_are_recomputed_only_for_keys_that_changed() -> None:
    ref = FakeReference()
    live = LiveQuality(window=10)
    live.set_reference("m", "1", ref)
    live.add_scores("m", "1", "champion", [0.5])
    first = live.figures()
    assert live.figures() == first and len(ref.calls) == 1
    live.add_scores("m", "1", "champion", [0.7])
    assert live.figures()[0].psi == pytest.approx(0.6) and len(ref.calls) == 2


def test_a_key_idle_for_long_is_forgotten() -> None:
    clock = Clock()
    live = LiveQuality(window=10, clock=clock)
    live.add_scores("m", "1", "champion", [0.5])
    clock.now += IDLE_S / 2
    live.add_scores("m", "2", "champion", [0.5])
    clock.now += IDLE_S / 2 + 1  # version 1: idle longer than IDLE_S; version 2: half that
    assert [f.version for f in live.figures()] == ["2"]


def test_at_most_max_keys_are_kept_the_longest_unfed_dropped_first() -> None:
    live = LiveQuality(window=10)
    for v in range(MAX_KEYS):
        live.add_scores("m", str(v), "champion", [0.5])
    live.add_scores("m", "0", "champion", [0.5])  # fed again: now the newest
    live.add_scores("m", "new", "champion", [0.5])
    versions = [f.version for f in live.figures()]
    assert len(versions) == MAX_KEYS
    assert "1" not in versions and {"0", "new"} <= set(versions)


def test_memory_is_bounded_by_the_windows() -> None:
    live = LiveQuality(window=5, score_window=7)
    for _ in range(100):
        live.add_outcomes("m", "1", "champion", [0.3] * 10, [0, 1] * 5)
        live.add_scores("m", "1", "champion", [0.3] * 10)
    (key,) = live._keys.values()
    assert len(key.outcome_scores) == len(key.labels) == 5 and len(key.scores) == 7
    f = only(live)
    assert (f.outcomes, f.outcomes_total, f.scores_total) == (5, 1000, 1000)


def test_outcomes_that_are_not_probabilities_or_0_1_are_left_out_with_a_warning(caplog) -> None:
    live = LiveQuality(window=10)
    live.add_outcomes("m", "1", "champion", [0.1, 1.5, math.nan, 0.9, 0.8, -0.1],
                      [0, 1, 1, 1, 2, 0])
    f = only(live)
    assert (f.outcomes, f.positives, f.outcomes_total) == (2, 1, 2)
    assert f.pr_auc == 1.0
    assert "4 scores of m 1 (champion) left out" in caplog.text


def test_scores_that_are_not_probabilities_are_left_out_with_a_warning(caplog) -> None:
    live = LiveQuality(window=10)
    live.add_scores("m", "1", "champion", [-0.1, math.nan])
    assert live.figures() == [] and "2 scores of m 1 (champion)" in caplog.text
    live.add_scores("m", "1", "champion", [0.5, 2.0])
    assert only(live).scores_total == 1


def test_outcomes_need_as_many_labels_as_scores() -> None:
    live = LiveQuality(window=10)
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        live.add_outcomes("m", "1", "champion", [0.1, 0.2], [0])
    with pytest.raises(ValueError, match=">= 1"):
        LiveQuality(window=0)
