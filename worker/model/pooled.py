"""The pooled window model's maths: event vectors -> pooled statistics -> one logit.

Per window (events newest first, each with its phrase's vector and its age to the newest
event), three statistics of the layer-normalised vectors (each standardised over its
dimensions, as the text head's LayerNorm does):

- ``mean``: the recency-weighted mean, weight ``0.5 ** (age / half_life_s)`` normalised to one;
- ``newest``: the newest event's vector;
- ``cos``: the cosine of the newest event's vector to the plain mean of the others (0 for a
  one-event window): does the newest event fit what the user was doing?

:class:`PooledHead` is linear in them and in the context features:
``logit = f . w_f + mean . w_mean + newest . w_newest + cos * w_cos + bias``. Training fits it
as a logistic regression on principal components and folds the projection back into the full
weights (:mod:`worker.training.pooled`), so serving is a few dot products. Training and serving
compute the statistics with :func:`pool`, the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.errors import ModelError

__all__ = ["POOLED_FILE", "PooledHead", "PooledStats", "layer_norm", "pool"]

POOLED_FILE = "pooled.safetensors"


def layer_norm(vectors: np.ndarray) -> np.ndarray:
    """float32 rows standardised over their dimensions (LayerNorm, unit weight, eps 1e-5).
    float32 because the vectors are float16 to begin with, and it is half the work of float64
    on a batch's vectors; training and serving both call this."""
    v = np.asarray(vectors, dtype=np.float32)
    return (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)


@dataclass(frozen=True, slots=True)
class PooledStats:
    """Per window: ``mean`` ``(n, dim)``, ``newest`` ``(n, dim)``, ``cos`` ``(n,)``."""

    mean: np.ndarray
    newest: np.ndarray
    cos: np.ndarray


def pool(rows: Sequence[Sequence[int]], ages_s: Sequence[Sequence[float]], vectors: np.ndarray,
         half_life_s: float) -> PooledStats:
    """The statistics of each window. ``rows[i]``: window ``i``'s events, newest first, as row
    numbers of ``vectors`` (layer-normalised, :func:`layer_norm`); ``ages_s[i]``: their ages to
    the newest event. A row may repeat (two events, one phrase). An empty window is a
    ValueError."""
    from scipy.sparse import csr_matrix

    n = len(rows)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    if n and lengths.min() < 1:
        raise ValueError("an empty window has no pooled statistics")
    dim = vectors.shape[1]
    if n == 0:
        empty = np.empty((0, dim))
        return PooledStats(empty, empty, np.empty(0))
    flat = np.fromiter((r for window in rows for r in window), dtype=np.int64,
                       count=int(lengths.sum()))
    ages = np.fromiter((a for window in ages_s for a in window), dtype=np.float64,
                       count=len(flat))
    owner = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    weight = np.power(0.5, ages / half_life_s)
    weight /= np.add.reduceat(weight, starts)[owner]
    shape = (n, len(vectors))
    mean = csr_matrix((weight, (owner, flat)), shape=shape) @ vectors
    newest = vectors[flat[starts]]
    rest_flag = np.ones(len(flat))
    rest_flag[starts] = 0.0
    rest = csr_matrix((rest_flag, (owner, flat)), shape=shape) @ vectors
    norms = np.linalg.norm(newest, axis=1) * np.linalg.norm(rest, axis=1)
    dots = np.einsum("ij,ij->i", newest, rest)
    cos = np.divide(dots, norms, out=np.zeros(n), where=(norms > 0) & (lengths > 1))
    return PooledStats(np.asarray(mean), newest, cos)


@dataclass(frozen=True, slots=True)
class PooledHead:
    """The linear map of context features and pooled statistics to a logit (module doc)."""

    feature_weight: np.ndarray  # (n_features,)
    mean_weight: np.ndarray  # (dim,)
    newest_weight: np.ndarray  # (dim,)
    cos_weight: float
    bias: float

    @property
    def dim(self) -> int:
        return len(self.mean_weight)

    @property
    def n_features(self) -> int:
        return len(self.feature_weight)

    def logits(self, stats: PooledStats, features: np.ndarray) -> np.ndarray:
        """``(n,)`` logits of ``n`` windows' statistics and context features ``(n, f)``."""
        return (np.asarray(features, dtype=np.float64) @ self.feature_weight
                + stats.mean @ self.mean_weight + stats.newest @ self.newest_weight
                + stats.cos * self.cos_weight + self.bias)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.numpy import save_file

        file = Path(directory) / POOLED_FILE
        save_file({"feature_weight": self.feature_weight.astype(np.float64),
                   "mean_weight": self.mean_weight.astype(np.float64),
                   "newest_weight": self.newest_weight.astype(np.float64),
                   "cos_weight": np.array([self.cos_weight]), "bias": np.array([self.bias])},
                  file, metadata={"format": "np"})
        file.chmod(0o644)  # safetensors writes 0600; the file ships in the package
        return file

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, dim: int, n_features: int) -> PooledHead:
        """Read and check :data:`POOLED_FILE` against the config's sizes (ModelError)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        file = Path(directory) / POOLED_FILE
        if not file.is_file():
            raise ModelError(f"model directory {directory} has no {POOLED_FILE}")
        try:
            tensors = load_file(file)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{file}: cannot read: {exc}") from None
        expected = {"feature_weight": (n_features,), "mean_weight": (dim,),
                    "newest_weight": (dim,), "cos_weight": (1,), "bias": (1,)}
        if set(tensors) != set(expected):
            raise ModelError(f"{file}: tensors {sorted(tensors)}, expected {sorted(expected)}")
        for key, shape in expected.items():
            value = tensors[key]
            if value.shape != shape or value.dtype.kind != "f":
                raise ModelError(f"{file}: {key} is {value.dtype} {value.shape}, expected "
                                 f"floats {shape} (text_dim={dim}, {n_features} features)")
            if not np.isfinite(value).all():
                raise ModelError(f"{file}: {key} holds NaN or infinite values")
        t = {k: v.astype(np.float64) for k, v in tensors.items()}
        return cls(t["feature_weight"], t["mean_weight"], t["newest_weight"],
                   float(t["cos_weight"][0]), float(t["bias"][0]))
