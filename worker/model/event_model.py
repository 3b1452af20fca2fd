"""EventVectorModel: scores windows from the vectors of their events' phrases.

Each event's phrase (:mod:`worker.features.sequence`) is encoded once and shared through
:class:`~worker.model.vectors.EventVectors` (process LRU, then the shared store, then one
encoder call for the batch's unseen phrases); the window is then a few dot products
(:mod:`worker.model.pooled`). A batch of windows that repeat what the stream has seen costs
no encoder call at all, which is what keeps the model at the speed of the stream.

Two ways in, the same scores: :meth:`score_async` (the worker: the shared store, encodes in
the vectors' executor) and :meth:`score` (blocking, no shared store: ``evaluate``, replays of
files, training reports).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from worker.features import ModelInput
from worker.model.config import ModelConfig
from worker.model.explain import Explanation, explain_batch
from worker.model.pooled import PooledHead, layer_norm, pool
from worker.model.vectors import EventVectors

__all__ = ["EventVectorModel"]


class EventVectorModel:
    """The ``pooled`` window model behind the scorer interface (see docs/contracts.md).

    ``max_chars`` is 0 (no window text is built); ``phrase_price`` is the price mode its
    inputs' phrases are rendered in. Not thread-safe: one scoring thread (or event loop).
    """

    max_chars = 0

    def __init__(self, *, config: ModelConfig, head: PooledHead, vectors: EventVectors,
                 device: object = "cpu") -> None:
        if config.kind != "pooled":
            raise ValueError(f"EventVectorModel needs a pooled config, got kind {config.kind!r}")
        if head.dim != vectors.dim:
            raise ValueError(f"head dim {head.dim} != encoder dim {vectors.dim}")
        self.config = config
        self.name = config.name
        self.version = config.version
        self.head = head
        self.vectors = vectors
        self.device = device
        self.phrase_price = config.window_model.phrase_price
        self.half_life_s = config.window_model.half_life_s

    def __repr__(self) -> str:
        return f"EventVectorModel({self.name!r}, {self.version!r}, {self.vectors!r})"

    @property
    def encoder_id(self) -> str:
        return self.vectors.encoder_id

    async def score_async(self, inputs: Sequence[ModelInput]) -> list[float]:
        """One purchase probability per input, in input order; vectors through the shared
        store. A :class:`~worker.errors.StoreError` from the store propagates (the batch is
        retried as any other store failure)."""
        if not inputs:
            return []
        phrases, rows = self._layout(inputs)
        return self._probabilities(inputs, rows, await self.vectors.vectors(phrases))

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        """:meth:`score_async`'s scores, blocking and without the shared store."""
        if not inputs:
            return []
        phrases, rows = self._layout(inputs)
        return self._probabilities(inputs, rows, self.vectors.vectors_here(phrases))

    async def explain_async(self, inputs: Sequence[ModelInput], *, top: int
                            ) -> tuple[list[float], list[Explanation]]:
        """:meth:`score_async`'s scores and, per input, an
        :class:`~worker.model.explain.Explanation` with the ``top`` features and events, from
        the same vectors in the same call (no further encoder or store work)."""
        if not inputs:
            return [], []
        phrases, rows = self._layout(inputs)
        return self._explained(inputs, rows, await self.vectors.vectors(phrases), top)

    def explain(self, inputs: Sequence[ModelInput], *, top: int
                ) -> tuple[list[float], list[Explanation]]:
        """:meth:`explain_async`, blocking and without the shared store."""
        if not inputs:
            return [], []
        phrases, rows = self._layout(inputs)
        return self._explained(inputs, rows, self.vectors.vectors_here(phrases), top)

    def warm_up(self) -> float:
        """Encode a few phrase shapes once (lazy initialisation of the encoder's kernels), past
        the caches. Returns the seconds it took."""
        t0 = time.perf_counter()
        encoder = self.vectors.encoder
        for words in (3, 12, 40):
            phrase = " ".join(["viewed"] * words)
            for count in (1, 8):
                encoder.encode([phrase] * count)
        return time.perf_counter() - t0

    def clear_cache(self) -> None:
        self.vectors.clear_cache()

    def _layout(self, inputs: Sequence[ModelInput]) -> tuple[list[str], list[list[int]]]:
        """The batch's distinct phrases and, per input, its events as indices into them."""
        n_features = self.head.n_features
        index: dict[str, int] = {}
        rows: list[list[int]] = []
        for item in inputs:
            if len(item.features) != n_features:
                raise ValueError(f"an input has {len(item.features)} features, the model takes "
                                 f"{n_features}")
            events = item.events
            if events is None or not events.phrases:
                raise ValueError("an input has no event sequence: build it with "
                                 f"phrase_price={self.phrase_price!r}")
            rows.append([index.setdefault(p, len(index)) for p in events.phrases])
        return list(index), rows

    def _probabilities(self, inputs: Sequence[ModelInput], rows: list[list[int]],
                       vectors: np.ndarray) -> list[float]:
        ages = [item.events.ages_s for item in inputs]  # type: ignore[union-attr]
        stats = pool(rows, ages, layer_norm(vectors), self.half_life_s)
        features = np.array([item.features for item in inputs], dtype=np.float64)
        return _sigmoid(self.head.logits(stats, features)).tolist()

    def _explained(self, inputs: Sequence[ModelInput], rows: list[list[int]],
                   vectors: np.ndarray, top: int) -> tuple[list[float], list[Explanation]]:
        ages = [item.events.ages_s for item in inputs]  # type: ignore[union-attr]
        normed = layer_norm(vectors)
        stats = pool(rows, ages, normed, self.half_life_s)
        features = np.array([item.features for item in inputs], dtype=np.float64)
        logits = self.head.logits(stats, features)
        explanations = explain_batch(self.head, rows, ages, normed, self.half_life_s, features,
                                     logits, top=top)
        return _sigmoid(logits).tolist(), explanations


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
