"""Training the pooled window model (frozen encoder): every distinct event phrase of the
examples is encoded once, each window's pooled statistics are computed with the serving code
(:func:`worker.model.pooled.pool`), and a linear head is fitted on them.

The head (:func:`fit_pooled_head`): the 42 context features, the first ``components``
principal components of the windows' recency-weighted mean vector and of their newest event's
vector (each PCA fitted on the training rows), and the newest event's cosine to the rest,
standardised, into scikit-learn's ``LogisticRegression`` (lbfgs, L2 ``C``, no class weights:
the scores are probabilities at the training base rate). Projection, scaling and
coefficients are folded into one :class:`~worker.model.pooled.PooledHead`, so serving is dot
products on the full vectors. No epochs and no early stopping: held-out users choose nothing.

The vectors are rounded to float16 and back, as the worker stores and reads them, so a window
scores the same in training, in ``evaluate`` and in the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.features import ModelInput
from worker.model.pooled import PooledHead, PooledStats, layer_norm, pool

__all__ = ["DEFAULT_HALF_LIFE_S", "DEFAULT_POOLED_COMPONENTS", "PooledFit", "PooledRun",
           "fit_pooled_head"]

log = logging.getLogger(__name__)

DEFAULT_POOLED_COMPONENTS = 8
DEFAULT_HALF_LIFE_S = 300.0
DEFAULT_C = 0.01
MIN_VARIANCE_RATIO = 1e-6  # a principal axis with less is numerically empty: left out


def fit_pooled_head(stats: PooledStats, features: np.ndarray, labels: np.ndarray,
                    train_idx: Sequence[int], *, components: int = DEFAULT_POOLED_COMPONENTS,
                    c: float = DEFAULT_C, text: bool = True
                    ) -> tuple[PooledHead, dict[str, Any]]:
    """Fit on the rows ``train_idx``; return the head and a summary. ``text=False`` is the
    ablation: the context features alone (the vector weights are zero)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if components < 1:
        raise ValueError(f"components must be >= 1, got {components}")
    if c <= 0:
        raise ValueError(f"C must be > 0, got {c}")
    idx = np.asarray(list(train_idx), dtype=int)
    y = np.asarray(labels, dtype=int)[idx]
    if len(set(y.tolist())) < 2:
        raise ValueError("the pooled head needs both classes in the training examples")
    feats = np.asarray(features, dtype=np.float64)
    n_feats, dim = feats.shape[1], stats.mean.shape[1]
    with threadpool_limits(limits=1):
        blocks = [feats[idx]]
        pcas, axes = [], []
        if text:
            for matrix in (stats.mean, stats.newest):
                pca = PCA(components, svd_solver="full").fit(matrix[idx])
                # fewer distinct vectors than components: the empty axes would get huge
                # standardised weights that cancel only in exact arithmetic
                keep = pca.explained_variance_ratio_ >= MIN_VARIANCE_RATIO
                pcas.append(pca)
                axes.append(pca.components_[keep])
                blocks.append(pca.transform(matrix[idx])[:, keep])
            blocks.append(stats.cos[idx, None])
        x = np.concatenate(blocks, axis=1)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
    weight = model.coef_[0] / scaler.scale_
    bias = float(model.intercept_[0] - weight @ scaler.mean_)
    full = {"mean": np.zeros(dim), "newest": np.zeros(dim)}
    cos_weight = 0.0
    if text:
        at = n_feats
        for name, pca, kept in zip(("mean", "newest"), pcas, axes, strict=True):
            full[name] = kept.T @ weight[at:at + len(kept)]
            bias -= float(pca.mean_ @ full[name])
            at += len(kept)
        cos_weight = float(weight[at])
    head = PooledHead(weight[:n_feats].copy(), full["mean"], full["newest"], cos_weight, bias)
    info = {"components": components if text else 0,
            "components_kept": {name: len(kept) for name, kept in
                                zip(("mean", "newest"), axes, strict=False)},
            "C": c, "n_iter": int(model.n_iter_[0]),
            "standardised_coefficients": [round(float(v), 6) for v in model.coef_[0]],
            "explained_variance_ratio": {
                name: [round(float(v), 6) for v in pca.explained_variance_ratio_]
                for name, pca in zip(("mean", "newest"), pcas, strict=False)}}
    return head, info


@dataclass(slots=True)
class PooledFit:
    """A fitted head and ``predict(indices) -> probabilities`` on the run's examples."""

    head: PooledHead
    predict: Callable[[Sequence[int]], np.ndarray]
    info: dict = field(default_factory=dict)


class PooledRun:
    """Fits of the pooled model on one set of examples (inputs built with their event
    sequences) and labels: :meth:`prepare` encodes and pools once, :meth:`fit` is then a
    logistic regression."""

    def __init__(self, encoder_dir: Path, inputs: Sequence[ModelInput], labels: np.ndarray, *,
                 components: int = DEFAULT_POOLED_COMPONENTS, c: float = DEFAULT_C,
                 half_life_s: float = DEFAULT_HALF_LIFE_S, phrase_max_tokens: int = 64,
                 device: str = "cpu", encoder_name: str = "encoder") -> None:
        self.encoder_dir = Path(encoder_dir)
        self.inputs = list(inputs)
        self.labels = np.asarray(labels, dtype=int)
        self.components = components
        self.c = c
        self.half_life_s = half_life_s
        self.phrase_max_tokens = phrase_max_tokens
        self.device = device
        self.encoder_name = encoder_name
        self.features = np.array([i.features for i in self.inputs], dtype=np.float64)
        self.stats: PooledStats | None = None
        self.text_dim = 0
        self.info: dict[str, Any] = {}

    def prepare(self) -> float:
        """Encode every distinct phrase once and pool every window. Returns seconds."""
        import torch

        from worker.model.phrase_encoder import TorchPhraseEncoder
        from worker.model.vectors import EventVectors

        t0 = time.perf_counter()
        encoder = TorchPhraseEncoder.from_directory(
            self.encoder_dir, name=self.encoder_name, device=torch.device(self.device),
            max_tokens=self.phrase_max_tokens)
        index: dict[str, int] = {}
        rows = []
        for item in self.inputs:
            if item.events is None:
                raise ValueError("the pooled model needs inputs built with a phrase_price")
            rows.append([index.setdefault(p, len(index)) for p in item.events.phrases])
        phrases = list(index)
        vectors = EventVectors(encoder, cache_size=0).vectors_here(phrases)
        self.text_dim = vectors.shape[1]
        self.stats = pool(rows, [i.events.ages_s for i in self.inputs],  # type: ignore[union-attr]
                          layer_norm(vectors), self.half_life_s)
        seconds = time.perf_counter() - t0
        events = sum(len(r) for r in rows)
        self.info = {"distinct_phrases": len(phrases), "events_in_windows": events,
                     "encoder_id": encoder.encoder_id, "encode_s": round(seconds, 2)}
        log.info("pooled: %d distinct phrases over %d window events encoded in %.1fs",
                 len(phrases), events, seconds)
        return seconds

    def fit(self, train_idx: Sequence[int], *, text: bool = True) -> PooledFit:
        if self.stats is None:
            raise RuntimeError("call prepare() first")
        stats, feats = self.stats, self.features
        head, info = fit_pooled_head(stats, feats, self.labels, train_idx,
                                     components=self.components, c=self.c, text=text)

        def predict(idx: Sequence[int]) -> np.ndarray:
            ix = np.asarray(list(idx), dtype=int)
            part = PooledStats(stats.mean[ix], stats.newest[ix], stats.cos[ix])
            return 1.0 / (1.0 + np.exp(-head.logits(part, feats[ix])))

        return PooledFit(head, predict, info)
