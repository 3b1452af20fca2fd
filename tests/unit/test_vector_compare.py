"""loadtest.vector_compare: pooled statistics of a window, PCA fitted on training rows only,
event phrases without age, and paired differences counted honestly."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.vector_compare import (
    event_phrase,
    event_table,
    fit_pca,
    paired,
    pooled_stats,
    price_bucket,
    recency_weights,
    sequence_inputs,
)


def test_recency_weights_sum_to_one_and_halve_per_half_life() -> None:
    w = recency_weights(np.array([0.0, 300.0, 600.0, 3000.0]), 300.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(0.5) and w[2] / w[0] == pytest.approx(0.25)
    assert (np.diff(w) < 0).all()


def test_pooled_stats_of_a_hand_made_window() -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])  # newest first
    ages = np.array([0.0, 300.0, 600.0])
    mean, newest, cos = pooled_stats(vectors, ages, 300.0)
    assert np.array_equal(newest, vectors[0])
    assert mean == pytest.approx(np.array([4, 2, 2]) / 7)  # weights 4/7, 2/7, 1/7
    assert cos == pytest.approx(0.0)  # orthogonal to the rest
    _, _, same = pooled_stats(np.array([[1.0, 2.0], [2.0, 4.0]]), np.array([0.0, 10.0]))
    _, _, opposite = pooled_stats(np.array([[1.0, 2.0], [-1.0, -2.0]]), np.array([0.0, 1.0]))
    assert same == pytest.approx(1.0) and opposite == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(1, 8))
        _, _, c = pooled_stats(rng.normal(size=(m, 5)), np.sort(rng.random(m)) * 1000)
        assert -1.0 <= c <= 1.0
    one_mean, one_newest, one_cos = pooled_stats(vectors[:1], ages[:1])
    assert np.array_equal(one_mean, vectors[0]) and one_cos == 0.0
    with pytest.raises(ValueError):
        pooled_stats(np.zeros((0, 3)), np.zeros(0))


def test_pca_is_fitted_on_the_training_rows_only() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    fit = np.arange(100)
    project = fit_pca(x, fit, 2)
    changed = x.copy()
    changed[100:] = rng.normal(size=(100, 6)) * 50  # only the scored rows change
    assert np.allclose(fit_pca(changed, fit, 2)(x), project(x))
    assert not np.allclose(fit_pca(changed, np.arange(200), 2)(x), project(x))


def _event(i: int, ts: int, kind: str = "view", price: float | None = 250.4,
           product: str = "p1") -> dict:
    item: dict = {"id": product, "category": "electronics.smartphone", "brand": "samsung"}
    if price is not None:
        item["price"] = price
        item["currency"] = "USD"
    return {"event_id": f"e{i}", "user_id": "u", "ts": ts, "event_type": kind,
            "product": item}


def test_event_phrase_has_no_age_and_a_coarse_price_or_none() -> None:
    bucket = event_phrase(_event(0, 0, price=250.4))
    assert bucket == "viewed electronics smartphone, samsung, price 300 USD"
    assert event_phrase(_event(0, 0, price=260.0)) == bucket  # the same bucket
    assert event_phrase(_event(0, 0), price="none") == "viewed electronics smartphone, samsung"
    assert "ago" not in bucket and "now" not in bucket
    assert [price_bucket(p) for p in (0.1, 1.0, 2.0, 5.0, 99.0, 150.0, 1000.0)] == \
        [0.0, 1.0, 3.0, 3.0, 100.0, 100.0, 1000.0]
    with pytest.raises(ValueError):
        event_phrase(_event(0, 0), price="exact")


def test_event_table_lists_events_newest_first_and_shares_phrases() -> None:
    a = _event(0, 1_000, product="p1")
    b = _event(1, 61_000, kind="add_to_cart", product="p2", price=None)
    c = _event(2, 121_000, product="p1")
    table, phrases = event_table([(a,), (a, b), (a, b, c)], "bucket", width=3)
    assert table.length.tolist() == [1, 2, 3]
    assert len(phrases) == 2  # a and c read the same
    assert table.phrase[2].tolist() == [0, 1, 0] and table.phrase[0].tolist() == [0, -1, -1]
    assert table.age_s[2].tolist() == [0.0, 60.0, 120.0]
    assert table.same_product[2].tolist() == [1.0, 0.0, 1.0]
    assert table.has_price[1].tolist() == [0.0, 1.0, 0.0]
    seq = sequence_inputs(table, np.ones((2, 4)))
    assert seq.shape == (3, 3, 4 + 7 + 5)
    assert (seq[0, 1:] == 0).all() and (seq[2, 2, :4] == 1).all()


def test_paired_differences_count_wins_and_bracket_the_mean() -> None:
    a = np.array([0.3, 0.2, 0.4, 0.1, 0.5])
    b = np.array([0.2, 0.25, 0.3, 0.05, 0.5])
    p = paired(a, b)
    assert p["wins"] == 3 and p["of"] == 5
    assert p["mean"] == pytest.approx(0.04)
    assert p["ci95"][0] < p["mean"] < p["ci95"][1]
    assert p["ci95"][1] - p["mean"] == pytest.approx(2.776 * p["sd"] / np.sqrt(5))
