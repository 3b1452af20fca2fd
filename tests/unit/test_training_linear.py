"""The linear head: exact in the fusion-head format, and equal to the scikit-learn fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.model.head import linear_fusion_head
from worker.training.linear import fit_linear_head


def test_linear_fusion_head_is_exactly_linear() -> None:
    gen = torch.Generator().manual_seed(0)
    text_w, feat_w = torch.randn(24, generator=gen), torch.randn(5, generator=gen)
    head = linear_fusion_head(text_w, feat_w, -1.5)
    text, feats = 3 * torch.randn(64, 24, generator=gen), 4 * torch.randn(64, 5, generator=gen)
    normed = torch.nn.functional.layer_norm(text, (24,))
    want = normed @ text_w + feats @ feat_w - 1.5
    with torch.no_grad():
        got = head(text, feats)
    assert torch.allclose(got, want, atol=1e-4)
    assert (head.hidden, head.drop.p) == (2, 0.0)


def test_fit_linear_head_matches_sklearn() -> None:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    n, dim, nf = 400, 16, 3
    text = rng.normal(size=(n, dim)).astype(np.float32)
    feats = rng.normal(size=(n, nf)).astype(np.float32)
    labels = (feats[:, 0] + text[:, 0] + rng.normal(size=n) > 1.5).astype(int)
    train_idx = np.arange(300)
    head, info = fit_linear_head(torch.from_numpy(text), torch.from_numpy(feats), labels,
                                 train_idx, components=3, c=0.1)
    with torch.no_grad():
        got = torch.sigmoid(head(torch.from_numpy(text), torch.from_numpy(feats))).numpy()

    normed = (text - text.mean(1, keepdims=True)) / np.sqrt(text.var(1, keepdims=True) + 1e-5)
    pca = PCA(3, svd_solver="full").fit(normed[train_idx])
    x = np.concatenate([feats, pca.transform(normed)], axis=1)
    scaler = StandardScaler().fit(x[train_idx])
    model = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x[train_idx]),
                                                         labels[train_idx])
    want = model.predict_proba(scaler.transform(x))[:, 1]
    assert np.abs(got - want).max() < 1e-4
    assert info["components"] == 3 and len(info["standardised_coefficients"]) == nf + 3


def test_fit_linear_head_needs_both_classes() -> None:
    text, feats = torch.zeros(10, 4), torch.zeros(10, 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_linear_head(text, feats, np.zeros(10, dtype=int), range(10))
