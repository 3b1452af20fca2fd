"""loadtest.vector_compare: the pooled candidates are the product's head, every choice is made
on the fit users only, the GRU's event table follows the product's sequences, and paired
differences are counted honestly."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.head_compare import Data as TextData
from loadtest.vector_compare import (
    ALL,
    DEFAULT,
    KCV_COMPONENTS,
    VectorCandidates,
    Vectors,
    event_table,
    main,
    paired,
    sequence_inputs,
)
from worker.features import build_input
from worker.model.pooled import PooledStats
from worker.training.pooled import fit_pooled_head


def _data(n: int = 600, dim: int = 24, seed: int = 0) -> Vectors:
    """Synthetic examples whose label depends on the features and on the mean vector."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 5))
    mean, newest = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    cos = rng.uniform(-1, 1, size=n)
    logit = features[:, 0] + 1.5 * mean[:, :3].sum(1) - 2.0
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    users = np.array([f"u{i // 3}" for i in range(n)])  # three examples per user
    text = TextData(vectors=rng.normal(size=(n, 8)).astype(np.float32),
                    features=features.astype(np.float32), labels=labels, users=users)
    return Vectors(text=text, stats={"bucket": PooledStats(mean, newest, cos)},
                   features=features.astype(np.float32).astype(np.float64))


def test_pooled_candidates_score_with_the_products_fitted_head() -> None:
    data = _data()
    fit, score = np.arange(400), np.arange(400, 600)
    cands = VectorCandidates(data)
    stats = data.stats["bucket"]
    part = PooledStats(stats.mean[score], stats.newest[score], stats.cos[score])
    for name, k in (("pooled", 8), ("pooled_k4", 4), ("pooled_k16", 16)):
        head, _ = fit_pooled_head(stats, data.features, data.text.labels, fit, components=k)
        got = cands.fit(name, fit, "s", score)(score)
        assert np.allclose(got, head.logits(part, data.features[score]))
    # the ablation is the features-only head: the same ranking as ``features``
    ablation = cands.fit("pooled_features", fit, "s", score)(score)
    plain = cands.fit("features", fit, "s", score)(score)
    assert np.corrcoef(ablation, plain)[0, 1] > 0.9999
    assert not np.allclose(cands.fit("pooled", fit, "s", score)(score), ablation)


def test_kcv_picks_its_components_on_the_fit_users_only() -> None:
    data = _data(seed=1)
    fit, score = np.arange(450), np.arange(450, 600)
    first = VectorCandidates(data).fit("pooled_kcv", fit, "salt", score)
    assert first.info["components"] in KCV_COMPONENTS  # type: ignore[attr-defined]
    rng = np.random.default_rng(2)
    stats = data.stats["bucket"]
    mean = stats.mean.copy()
    mean[score] = rng.normal(size=mean[score].shape) * 30  # only the scored rows change
    labels = data.text.labels.copy()
    labels[score] = 1 - labels[score]
    changed = Vectors(text=TextData(data.text.vectors, data.text.features, labels,
                                    data.text.users),
                      stats={"bucket": PooledStats(mean, stats.newest, stats.cos)},
                      features=data.features)
    second = VectorCandidates(changed).fit("pooled_kcv", fit, "salt", score)
    assert second.info == first.info  # type: ignore[attr-defined]
    assert np.allclose(second(fit), first(fit))
    # ... while the fit rows do decide it: a fit on other rows gives other scores
    other = VectorCandidates(data).fit("pooled_kcv", np.arange(150, 600), "salt", score)
    assert not np.allclose(other(fit), first(fit))


def test_kcv_fits_and_scores_nothing_but_fit_rows() -> None:
    data = _data(seed=3)
    fit, score = np.arange(0, 600, 2), np.arange(1, 600, 2)
    touched: list[np.ndarray] = []

    class Spy(VectorCandidates):
        def pooled(self, price, components, fit_idx, *, text=True):  # type: ignore[no-untyped-def]
            touched.append(np.asarray(fit_idx))
            inner = super().pooled(price, components, fit_idx, text=text)

            def scores(idx: np.ndarray) -> np.ndarray:
                touched.append(np.asarray(idx))
                return inner(idx)

            return scores

    Spy(data).fit("pooled_kcv", fit, "salt", score)
    assert len(touched) == 2 * 5 * len(KCV_COMPONENTS) + 1  # inner fits and scores, the refit
    assert all(np.isin(t, fit).all() for t in touched)
    assert np.array_equal(touched[-1], fit)


def test_the_default_run_leaves_the_grus_out_and_unknown_names_fail_early() -> None:
    assert "gru" in ALL and "gru_loss" in ALL
    assert not {"gru", "gru_loss", "transformer"} & set(DEFAULT)
    assert {"pooled", "pooled_k4", "pooled_k16", "pooled_kcv", "pooled_noprice",
            "pooled_features", "text", "features", "baseline"} == set(DEFAULT)
    with pytest.raises(SystemExit):
        main(["no-such-file.csv", "--candidates", "pooled,pooled_hl"])
    with pytest.raises(ValueError, match="unknown candidate"):
        VectorCandidates(_data()).fit("pooled_hl", np.arange(10), "s", np.arange(10))


def _event(i: int, ts: int, kind: str = "view", price: float | None = 250.4,
           product: str = "p1") -> dict:
    item: dict = {"id": product, "category": "electronics.smartphone", "brand": "samsung"}
    if price is not None:
        item["price"] = price
        item["currency"] = "USD"
    return {"event_id": f"e{i}", "user_id": "u", "ts": ts, "event_type": kind,
            "product": item}


def test_event_table_follows_the_products_sequences_newest_first() -> None:
    a = _event(0, 1_000, product="p1")
    b = _event(1, 61_000, kind="add_to_cart", product="p2", price=None)
    c = _event(2, 121_000, product="p1")
    windows = [(a,), (a, b), (a, b, c)]
    sequences = [build_input(w, max_chars=0, phrase_price="bucket").events for w in windows]
    table, phrases = event_table(windows, sequences)
    assert table.length.tolist() == [1, 2, 3]
    assert phrases == list(sequences[1].phrases[::-1])  # a and c read the same: 2 phrases
    assert table.phrase[2].tolist() == [0, 1, 0] and table.phrase[0].tolist() == [0, -1, -1]
    assert table.age_s[2].tolist() == [0.0, 60.0, 120.0]
    assert table.same_product[2].tolist() == [1.0, 0.0, 1.0]
    assert table.has_price[1].tolist() == [0.0, 1.0, 0.0]
    seq = sequence_inputs(table, np.ones((2, 4)))
    assert seq.shape == (3, 3, 4 + 7 + 5)
    assert (seq[0, 1:] == 0).all() and (seq[2, 2, :4] == 1).all()
    with pytest.raises(ValueError):
        event_table(windows[1:], sequences[:2])  # sequences of other windows


def test_paired_differences_count_wins_and_bracket_the_mean() -> None:
    a = np.array([0.3, 0.2, 0.4, 0.1, 0.5])
    b = np.array([0.2, 0.25, 0.3, 0.05, 0.5])
    p = paired(a, b)
    assert p["wins"] == 3 and p["of"] == 5
    assert p["mean"] == pytest.approx(0.04)
    assert p["ci95"][0] < p["mean"] < p["ci95"][1]
    assert p["ci95"][1] - p["mean"] == pytest.approx(2.776 * p["sd"] / np.sqrt(5))


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_sequence_models_learn_a_signal_carried_by_the_events(arch: str) -> None:
    """A window whose newest event is an add-to-cart is positive: both sequence models find
    it from the event table alone (the features carry nothing)."""
    from loadtest.vector_compare import fit_gru

    rng = np.random.default_rng(1)
    windows, sequences, labels = [], [], []
    for i in range(300):
        n = int(rng.integers(1, 5))
        kinds = ["view"] * (n - 1) + ["add_to_cart" if i % 3 == 0 else "view"]
        window = tuple(_event(10 * i + j, 1_000 + j * 30_000, kind=k, product=f"p{j}")
                       for j, k in enumerate(kinds))
        for j, event in enumerate(window):  # 40 brands: enough distinct phrases for the PCA
            event["product"]["brand"] = f"brand{(i + j) % 40}"
        windows.append(window)
        sequences.append(build_input(window, max_chars=0, phrase_price="bucket").events)
        labels.append(int(kinds[-1] == "add_to_cart"))
    table, phrases = event_table(windows, sequences)
    vectors = rng.normal(size=(len(phrases), 24))
    y = np.array(labels)
    x = np.zeros((len(y), 3))
    idx = np.arange(len(y))
    predict = fit_gru(table, vectors, x, y, idx, idx[:200], idx[200:250], arch=arch, epochs=8)
    scores = predict(idx[250:])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[250:], scores) > 0.9
    with pytest.raises(ValueError, match="arch"):
        fit_gru(table, vectors, x, y, idx, idx[:200], idx[200:250], arch="lstm")
