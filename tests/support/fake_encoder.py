"""A phrase encoder without a model: deterministic vectors, and a record of every call."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np


class FakeEncoder:
    """A :class:`~worker.model.vectors.PhraseEncoder` whose vector of a phrase is drawn from a
    generator seeded by (encoder id, phrase); ``calls`` lists the phrases of each call and
    ``threads`` the threads that called it."""

    def __init__(self, encoder_id: str = "fake-1", dim: int = 8) -> None:
        self.encoder_id = encoder_id
        self.dim = dim
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()

    def vector(self, phrase: str) -> np.ndarray:
        seed = hashlib.sha256(f"{self.encoder_id}|{phrase}".encode()).digest()
        return np.random.default_rng(list(seed)).normal(size=self.dim).astype(np.float32)

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        self.calls.append(list(phrases))
        self.threads.add(threading.get_ident())
        return np.stack([self.vector(p) for p in phrases])
