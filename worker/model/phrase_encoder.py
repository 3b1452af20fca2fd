"""The text encoder as a :class:`~worker.model.vectors.PhraseEncoder`, and the id of its weights.

Phrases are tokenized once, sorted by length and run in sub-batches, each padded to its own
longest phrase, as :class:`~worker.model.intent.IntentModel` runs window texts; on CUDA under
bf16 autocast. The encoder id is a fingerprint of the files that decide the vectors (config,
tokenizer, weights) plus the pooling and token budget, so a changed file, a fine-tuned copy or
another budget gets new keys in the shared store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from worker.errors import ModelError
from worker.model.encoder import TextEncoder, autocast, default_batch, length_batches

__all__ = ["PHRASE_MAX_TOKENS", "TorchPhraseEncoder", "encoder_fingerprint"]

PHRASE_MAX_TOKENS = 64  # a phrase is ~11 tokens; a long title plus a review stays under this

# the files that decide an encoder's vectors (others, such as README.md, do not)
_FINGERPRINT_GLOBS = ("config.json", "tokenizer*.json", "special_tokens_map.json", "vocab.txt",
                      "merges.txt", "*.model", "*.safetensors", "*.bin")


def encoder_fingerprint(directory: Path) -> str:
    """24 hex characters of BLAKE2b over the names and bytes of the encoder directory's
    config, tokenizer and weight files (top level). A ModelError when there are none."""
    directory = Path(directory)
    files = sorted({p for pattern in _FINGERPRINT_GLOBS for p in directory.glob(pattern)
                    if p.is_file()})
    if not files:
        raise ModelError(f"encoder directory {directory} has no config, tokenizer or weights")
    digest = hashlib.blake2b(digest_size=12, usedforsecurity=False)
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


class TorchPhraseEncoder:
    """Phrases -> float32 vectors with a :class:`~worker.model.encoder.TextEncoder`.

    ``name``: a readable first part of the id (letters, digits, ``._-``), e.g. the encoder
    package; ``fingerprint``: :func:`encoder_fingerprint` of its directory. The id is
    ``<name>-<fingerprint>-<pooling>-<max_tokens>``. Blocking; one thread at a time.
    """

    def __init__(self, encoder: TextEncoder, *, name: str, fingerprint: str,
                 max_tokens: int = PHRASE_MAX_TOKENS, batch_size: int | None = None) -> None:
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:48] or "encoder"
        self.encoder = encoder.eval()
        self.device = next(encoder.parameters()).device
        if batch_size is None:
            batch_size = default_batch(self.device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.max_tokens = min(max_tokens, encoder.max_positions)
        self._id = f"{safe_name}-{fingerprint}-{encoder.pooling}-{self.max_tokens}"

    @classmethod
    def from_directory(cls, directory: Path, *, name: str | None = None, pooling: str = "mean",
                       device: torch.device | None = None, max_tokens: int = PHRASE_MAX_TOKENS,
                       batch_size: int | None = None) -> TorchPhraseEncoder:
        """Load the encoder of ``directory`` (never the network) and fingerprint it."""
        from worker.model.encoder import load_encoder

        directory = Path(directory)
        encoder = load_encoder(directory, pooling=pooling)
        if device is not None:
            encoder = encoder.to(device)
        return cls(encoder, name=name or directory.name, fingerprint=encoder_fingerprint(directory),
                   max_tokens=max_tokens, batch_size=batch_size)

    @property
    def encoder_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        out = np.empty((len(phrases), self.dim), dtype=np.float32)
        if not phrases:
            return out
        ids = self.encoder.encode(phrases, self.max_tokens)
        batches = length_batches(ids, self.batch_size, self.encoder.pad_id)
        with torch.inference_mode(), autocast(self.device):
            for idx, input_ids, mask in batches:
                pooled = self.encoder(input_ids.to(self.device), mask.to(self.device))
                out[idx] = pooled.float().cpu().numpy()
        return out
