"""Frozen-encoder text vectors, computed once per distinct text and cached.

The cache maps ``sha256(text)`` to a float32 vector; it can be kept in an ``.npz`` file
between runs, tagged with an encoder id (hash of the weights, pooling and token budget)
so that vectors of another encoder are never reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worker.dataset.progress import bar

if TYPE_CHECKING:
    from worker.model.intent import IntentModel

__all__ = ["EmbeddingCache", "encoder_id", "embed_texts"]

log = logging.getLogger(__name__)
CHUNK = 256


class EmbeddingCache:
    """Vectors by text hash for one encoder id; ``load``/``save`` an ``.npz`` file."""

    def __init__(self, encoder: str) -> None:
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def load(self, path: str | os.PathLike[str]) -> int:
        """Add the vectors of a cache file made for the same encoder; return how many."""
        path = Path(path)
        if not path.is_file():
            return 0
        with np.load(path, allow_pickle=False) as data:
            if str(data["encoder"]) != self.encoder:
                log.info("embedding cache %s is for another encoder; ignored", path)
                return 0
            keys, matrix = data["keys"], data["vectors"]
            self.vectors.update({str(k): matrix[i] for i, k in enumerate(keys)})
        return len(keys)

    def save(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.vectors)
        matrix = np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 0))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, encoder=np.array(self.encoder), keys=np.array(keys), vectors=matrix)
        tmp.replace(path)


def encoder_id(encoder_dir: str | os.PathLike[str], *, pooling: str, max_tokens: int) -> str:
    """A stable id of an encoder's weights and the way texts are cut and pooled."""
    digest = hashlib.sha256(f"{pooling}\x1f{max_tokens}".encode())
    for file in sorted(Path(encoder_dir).glob("*")):
        if file.suffix in (".safetensors", ".bin", ".json", ".txt") and file.is_file():
            digest.update(file.name.encode())
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def embed_texts(model: IntentModel, texts: Sequence[str], *, cache: EmbeddingCache | None = None,
                progress: bool = True) -> np.ndarray:
    """``(len(texts), dim)`` float32 vectors; each distinct text not in ``cache`` is run once
    (and added to it)."""
    cache = cache if cache is not None else EmbeddingCache("")
    keys = [cache.key(t) for t in texts]
    missing: dict[str, str] = {}
    for k, t in zip(keys, texts, strict=True):
        if k not in cache.vectors and k not in missing:
            missing[k] = t
    log.info("embedding %d distinct texts (%d texts, %d cached)", len(missing), len(texts),
             len(set(keys)) - len(missing))
    todo = list(missing.items())
    with bar(total=len(todo), desc="embed", unit="text", enabled=progress) as pbar:
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            vectors = model.embed([t for _, t in part]).numpy().astype(np.float32)
            for (k, _), v in zip(part, vectors, strict=True):
                cache.vectors[k] = v
            pbar.update(len(part))
    dim = model.encoder.dim
    if not keys:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([cache.vectors[k] for k in keys]).astype(np.float32, copy=False)
