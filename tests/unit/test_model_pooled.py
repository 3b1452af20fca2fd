"""The pooled window model: statistics, the folded head, its files and config, and the model
scoring the same with and without the shared store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.fake_encoder import FakeEncoder
from worker.errors import ModelError
from worker.features import FEATURE_NAMES, build_input
from worker.model import ModelConfig
from worker.model.config import FORMAT, WindowModelSection
from worker.model.event_model import EventVectorModel
from worker.model.pooled import POOLED_FILE, PooledHead, PooledStats, layer_norm, pool
from worker.model.vectors import EventVectors
from worker.training.pooled import fit_pooled_head
from worker.vectors import MemoryVectorStore

DIM = 8
POOLED = WindowModelSection(kind="pooled", half_life_s=300.0, phrase_price="bucket")


CREATED = "2026-01-01T00:00:00Z"


def pooled_config(**changes: object) -> ModelConfig:
    return ModelConfig(**{"name": "p", "version": "1", "text_dim": DIM, "window_model": POOLED,
                          "created": CREATED, **changes})


def random_head(seed: int = 0, dim: int = DIM) -> PooledHead:
    rng = np.random.default_rng(seed)
    return PooledHead(rng.normal(size=len(FEATURE_NAMES)), rng.normal(size=dim),
                      rng.normal(size=dim), 0.7, -1.5)


def test_pool_matches_a_direct_computation() -> None:
    vectors = layer_norm(np.random.default_rng(1).normal(size=(4, DIM)))
    rows, ages = [[2, 0, 1], [3], [1, 1]], [[0.0, 60.0, 900.0], [0.0], [0.0, 30.0]]
    stats = pool(rows, ages, vectors, half_life_s=300.0)
    w = 0.5 ** (np.array(ages[0]) / 300.0)
    assert np.allclose(stats.mean[0], (w / w.sum()) @ vectors[rows[0]])
    assert np.allclose(stats.newest[0], vectors[2])
    rest = vectors[[0, 1]].mean(0)
    cos = vectors[2] @ rest / np.linalg.norm(vectors[2]) / np.linalg.norm(rest)
    assert stats.cos[0] == pytest.approx(cos)
    assert stats.cos[1] == 0.0  # one event: nothing to compare with
    assert stats.cos[2] == pytest.approx(1.0)  # one phrase twice
    assert np.allclose(stats.mean[1], vectors[3])
    with pytest.raises(ValueError, match="empty window"):
        pool([[0], []], [[0.0], []], vectors, 300.0)


def test_fitted_head_folds_the_projection_exactly() -> None:
    """The folded head's logits on the full vectors equal the fitted pipeline's own
    (PCA -> scaler -> logistic regression) decision function, so serving needs no PCA."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n = 300
    stats = PooledStats(rng.normal(size=(n, DIM)), rng.normal(size=(n, DIM)),
                        rng.uniform(-1, 1, n))
    features = rng.normal(size=(n, len(FEATURE_NAMES)))
    labels = (stats.mean[:, 0] + features[:, 0] + rng.normal(size=n) > 1).astype(int)
    train = np.arange(200)
    calls = []
    real = LogisticRegression.fit

    def recording(self, x, y):  # keep what the regression saw
        calls.append((self, x))
        return real(self, x, y)

    LogisticRegression.fit = recording
    try:
        head, info = fit_pooled_head(stats, features, labels, train, components=3)
    finally:
        LogisticRegression.fit = real
    model, x = calls[0]
    assert np.allclose(head.logits(PooledStats(stats.mean[train], stats.newest[train],
                                               stats.cos[train]), features[train]),
                       model.decision_function(x), atol=1e-8)
    assert len(info["standardised_coefficients"]) == len(FEATURE_NAMES) + 2 * 3 + 1
    ablation, _ = fit_pooled_head(stats, features, labels, train, text=False)
    assert not ablation.mean_weight.any() and not ablation.newest_weight.any()
    assert ablation.cos_weight == 0.0


def test_head_file_round_trip_and_checks(tmp_path: Path) -> None:
    head = random_head()
    head.save(tmp_path)
    back = PooledHead.load(tmp_path, dim=DIM, n_features=len(FEATURE_NAMES))
    assert np.array_equal(back.mean_weight, head.mean_weight) and back.bias == head.bias
    with pytest.raises(ModelError, match=r"mean_weight is float64 \(8,\), expected floats \(9,\)"):
        PooledHead.load(tmp_path, dim=9, n_features=len(FEATURE_NAMES))
    bad = PooledHead(head.feature_weight, head.mean_weight * np.nan, head.newest_weight, 0.0, 0.0)
    bad.save(tmp_path)
    with pytest.raises(ModelError, match="NaN"):
        PooledHead.load(tmp_path, dim=DIM, n_features=len(FEATURE_NAMES))
    (tmp_path / POOLED_FILE).unlink()
    with pytest.raises(ModelError, match=f"has no {POOLED_FILE}"):
        PooledHead.load(tmp_path, dim=DIM, n_features=len(FEATURE_NAMES))


def test_config_formats() -> None:
    text = ModelConfig(name="t", version="1", text_dim=DIM, created=CREATED)
    raw = text.to_json()
    assert raw["format"] == FORMAT and raw["window_model"] == {"kind": "text"}
    # a format-1 directory (no window_model) reads as the text kind
    old = {**raw, "format": "intent-worker-model/1"}
    del old["window_model"]
    assert ModelConfig.from_json(old, "old").kind == "text"
    with pytest.raises(ModelError, match="has no window_model"):
        ModelConfig.from_json({**old, "window_model": {"kind": "pooled"}}, "old")
    with pytest.raises(ModelError, match="a newer format needs a newer worker"):
        ModelConfig.from_json({**raw, "format": "intent-worker-model/9"}, "new")
    pooled = pooled_config().to_json()
    assert "head" not in pooled
    assert ModelConfig.from_json(json.loads(json.dumps(pooled)), "p") == pooled_config()
    for change, message in (({"kind": "gru"}, "upgrade the worker or retrain"),
                            ({"half_life_s": 0}, "half_life_s must be a number > 0"),
                            ({"phrase_price": "cents"}, "phrase_price is 'cents'")):
        broken = {**pooled, "window_model": {**pooled["window_model"], **change}}
        with pytest.raises(ModelError, match=message):
            ModelConfig.from_json(broken, "p")
    with pytest.raises(ModelError, match=r"missing keys \['head'\]"):
        ModelConfig.from_json({k: v for k, v in raw.items() if k != "head"}, "t")


def window(n: int = 3) -> list[dict]:
    return [{"event_id": f"e{i}", "user_id": "u", "event_type": "view",
             "ts": 1_000_000 + i * 60_000,
             "product": {"id": f"p{i % 2}", "category": "electronics.phone", "price": 120.0 + i}}
            for i in range(n)]


def test_model_scores_the_same_with_and_without_the_store() -> None:
    encoder = FakeEncoder(dim=DIM)
    store = MemoryVectorStore()
    shared = EventVectorModel(config=pooled_config(), head=random_head(),
                              vectors=EventVectors(encoder, store=store))
    here = EventVectorModel(config=pooled_config(), head=random_head(),
                            vectors=EventVectors(FakeEncoder(dim=DIM)))
    inputs = [build_input(window(n), max_chars=0, phrase_price="bucket") for n in (1, 3, 5)]
    assert inputs[0].text == "" and inputs[2].events is not None
    first = asyncio.run(shared.score_async(inputs))
    assert first == pytest.approx(here.score(inputs), abs=1e-12)
    assert all(0 < p < 1 for p in first)
    assert len(encoder.calls) == 1  # one call for the batch's distinct phrases
    assert asyncio.run(shared.score_async(inputs)) == first
    assert len(encoder.calls) == 1  # then none: the LRU
    with pytest.raises(ValueError, match="phrase_price='bucket'"):
        here.score([build_input(window(2), max_chars=768)])


def test_numerically_empty_axes_are_left_out_of_the_fit() -> None:
    """Vectors of rank 2 asked for 4 components: the two empty axes are dropped, so the folded
    weights stay the size of the data's (no huge weights cancelling in the bias)."""
    rng = np.random.default_rng(5)
    n = 300
    basis = rng.normal(size=(2, DIM))
    low_rank = rng.normal(size=(n, 2)) @ basis
    stats = PooledStats(low_rank, low_rank[::-1].copy(), rng.uniform(-1, 1, n))
    features = rng.normal(size=(n, len(FEATURE_NAMES)))
    labels = (low_rank[:, 0] + rng.normal(size=n) > 0).astype(int)
    head, info = fit_pooled_head(stats, features, labels, np.arange(n), components=4)
    assert info["components_kept"] == {"mean": 2, "newest": 2}
    assert abs(head.bias) < 50 and np.abs(head.mean_weight).max() < 50
