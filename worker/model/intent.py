"""IntentModel: encoder + fusion head behind the Scorer protocol (see docs/contracts.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from cachetools import LRUCache
from torch import Tensor

from worker.errors import ConfigError
from worker.features import ModelInput
from worker.model.config import ModelConfig
from worker.model.encoder import TextEncoder, autocast, collate, default_batch, length_batches
from worker.model.head import FusionHead


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without CUDA is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


class IntentModel:
    """Scores model inputs with a text encoder and a fusion head.

    Inputs are tokenized once (cut to ``max_tokens``), sorted by length and run in
    sub-batches of at most ``batch_size`` sequences (default: 16 on CPU, where less padding
    wins, 64 on CUDA), each padded to its own longest sequence; results come back in input
    order. On CUDA: bf16 autocast and pinned,
    non-blocking copies.

    **Text cache.** The encoder's pooled vector depends on the text alone (the context features
    join in the head), so vectors of the last ``cache_size`` distinct texts are kept (LRU, on
    the model's device; 384 floats each for MiniLM) and only texts not seen recently go
    through the encoder; texts repeated within one call are encoded once. Windows repeat
    more than one would think: a user who views one product, or many users whose window is
    one view of the same bestseller. ``cache_size=0`` turns it off. Not thread-safe: one
    scoring thread per model (the worker's executor has one).
    """

    phrase_price = None  # reads the window text, not event phrases

    def __init__(self, *, encoder: TextEncoder, head: FusionHead, config: ModelConfig,
                 device: torch.device, max_tokens: int | None = None,
                 max_chars: int | None = None, batch_size: int | None = None,
                 cache_size: int = 20_000) -> None:
        if batch_size is None:
            batch_size = default_batch(device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.name = config.name
        self.version = config.version
        self.device = device
        self.max_tokens = max_tokens or config.max_tokens
        self.max_chars = max_chars or config.max_chars
        self.batch_size = batch_size
        self.encoder = encoder.to(device).eval()
        self.head = head.to(device).eval()
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: LRUCache[str, Tensor] = LRUCache(maxsize=max(cache_size, 1))
        self.cache_hits = 0
        self.cache_misses = 0

    def __repr__(self) -> str:
        return f"IntentModel({self.name!r}, {self.version!r}, device={self.device})"

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        """One purchase probability in [0, 1] per input, in input order."""
        if not inputs:
            return []
        n_features = self.head.n_features
        for item in inputs:
            if len(item.features) != n_features:
                raise ValueError(f"an input has {len(item.features)} features, the model takes "
                                 f"{n_features}")
        if self.cache_size == 0:
            return self._score_uncached(inputs)
        texts = [i.text for i in inputs]
        with torch.inference_mode(), autocast(self.device):
            vectors = self._vectors(texts)
            features = self._to_device(
                torch.tensor([i.features for i in inputs], dtype=torch.float32))
            logits = self.head(torch.stack([vectors[t] for t in texts]), features)
            return torch.sigmoid(logits.float()).tolist()

    def warm_up(self) -> float:
        """Run the model once per typical shape (short, medium and full-budget sequences, one
        and a few at a time) so the first real batches do not pay for lazy initialisation
        (CUDA kernels and allocator, oneDNN primitives). Leaves the text cache alone. Returns
        the seconds it took."""
        t0 = time.perf_counter()
        blank = (0.0,) * self.head.n_features
        for words in (4, 32, self.max_tokens):
            text = " ".join(["view"] * words)
            for count in (1, min(self.batch_size, 8)):
                self._score_uncached([ModelInput(text=text, features=blank)] * count)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def clear_cache(self) -> None:
        self._cache.clear()

    def _vectors(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Pooled vectors of the distinct ``texts``: from the cache, else from the encoder."""
        out: dict[str, Tensor] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            hit = self._cache.get(text)  # a hit becomes the most recently used
            if hit is None:
                missing.append(text)
            else:
                out[text] = hit
        self.cache_hits += len(texts) - len(missing)
        self.cache_misses += len(missing)
        for idx, input_ids, mask in self._batches(missing) if missing else ():
            pooled = self.encoder(input_ids, mask)
            # clone: a row is a view that would keep the whole batch tensor alive in the cache
            for row, vector in zip(idx, pooled.clone().unbind(0), strict=True):
                out[missing[row]] = vector
        for text in missing:
            self._cache[text] = out[text]  # evicts the least recently used when full
        return out

    def _score_uncached(self, inputs: Sequence[ModelInput]) -> list[float]:
        parts, order = [], []
        with torch.inference_mode(), autocast(self.device):
            for idx, input_ids, mask in self._batches([i.text for i in inputs]):
                features = self._to_device(
                    torch.tensor([inputs[i].features for i in idx], dtype=torch.float32))
                logits = self.head(self.encoder(input_ids, mask), features)
                parts.append(torch.sigmoid(logits.float()))
                order.extend(idx)
        probs = torch.cat(parts).tolist()
        out = [0.0] * len(inputs)
        for pos, i in enumerate(order):
            out[i] = probs[pos]
        return out

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled text vectors ``(len(texts), text_dim)``, float32 on the CPU, in input order."""
        if not texts:
            return torch.empty((0, self.encoder.dim))
        parts, order = [], []
        with torch.inference_mode(), autocast(self.device):
            for idx, input_ids, mask in self._batches(texts):
                parts.append(self.encoder(input_ids, mask).float())
                order.extend(idx)
        vectors = torch.cat(parts).cpu()
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return vectors[inverse]

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of the texts, padded to the longest (on the CPU)."""
        return collate(self.encoder.encode(texts, self.max_tokens), self.encoder.pad_id)

    def forward_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       features: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch,)`` with autograd on (for training); tensors on ``self.device``."""
        return self.head(self.encoder(input_ids, attention_mask), features)

    def _batches(self, texts: Sequence[str]) -> Iterator[tuple[list[int], Tensor, Tensor]]:
        """(indices, input_ids, attention_mask) per sub-batch, longest first, on the device."""
        ids = self.encoder.encode(texts, self.max_tokens)
        for idx, input_ids, mask in length_batches(ids, self.batch_size, self.encoder.pad_id):
            yield idx, self._to_device(input_ids), self._to_device(mask)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor
