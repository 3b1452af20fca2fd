"""EventVectors: the encoder's vector of each event phrase, each phrase encoded once.

A lookup goes, for the distinct phrases of a call:

1. to this process's LRU (``cache_size`` vectors; a hit becomes the most recently used);
2. for the rest, to the shared :class:`~worker.vectors.VectorStore` (Redis: one pipelined
   round trip), so restarts, rebalances and a group of workers share vectors;
3. for what is still missing, to the encoder: ONE call with every missing distinct phrase (it
   batches internally), run in an executor so the event loop keeps heartbeating; the new
   vectors then go into the LRU and, in one more round trip, into the store.

Every vector is kept and returned as the float16 the store holds, widened to float32, so a
vector is the same value whether it was just encoded, found here or read from Redis.

Keys name the encoder (:attr:`PhraseEncoder.encoder_id`): two encoders never share a vector.
The counters count distinct phrases per call (a phrase twice in one call is looked up once).
Not thread-safe: call it from one event loop. Two concurrent calls may both encode a phrase
neither has yet; the second write is the same vector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np
from cachetools import LRUCache

from worker.vectors import VectorStore, key_prefix, phrase_digest

__all__ = ["STORED_DTYPE", "EventVectors", "PhraseEncoder"]

log = logging.getLogger(__name__)

STORED_DTYPE = np.dtype("<f2")  # float16, little-endian: the bytes in the store


class PhraseEncoder(Protocol):
    """Encodes phrases; blocking (it runs in an executor)."""

    @property
    def encoder_id(self) -> str:
        """Names the encoder's weights, tokenizer, pooling and token budget: equal ids mean
        equal vectors (:func:`~worker.vectors.key_prefix` checks its characters)."""
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        """float32 ``(len(phrases), dim)``, in input order."""
        ...


class EventVectors:
    """Vectors of event phrases from an LRU, a shared store and, for the rest, the encoder.

    ``store=None``: no shared store (the LRU alone). ``executor=None``: the loop's default
    executor; the worker passes its one scoring thread, as the model's calls use.
    """

    def __init__(self, encoder: PhraseEncoder, *, store: VectorStore | None = None,
                 cache_size: int = 50_000, ttl_s: int = 7 * 86_400,
                 executor: Executor | None = None) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        self.encoder = encoder
        self.encoder_id = encoder.encoder_id
        self._key_prefix = key_prefix(self.encoder_id)  # a bad id fails here, not in a batch
        self.dim = int(encoder.dim)
        self.store = store
        self.ttl_s = ttl_s
        self.cache_size = cache_size
        self._cache: LRUCache[str, np.ndarray] = LRUCache(maxsize=max(cache_size, 1))
        self._executor = executor
        self.process_hits = 0
        self.store_hits = 0
        self.encoded = 0
        self.encoder_calls = 0

    def __repr__(self) -> str:
        return (f"EventVectors({self.encoder_id!r}, cache={len(self._cache)}/{self.cache_size}, "
                f"process_hits={self.process_hits}, store_hits={self.store_hits}, "
                f"encoded={self.encoded})")

    def clear_cache(self) -> None:
        """Empty the process LRU (the shared store keeps its vectors)."""
        self._cache.clear()

    async def vectors(self, phrases: Sequence[str]) -> np.ndarray:
        """float32 ``(len(phrases), dim)``, one row per phrase, in input order.

        Raises :class:`~worker.errors.StoreError` when the store fails (vectors already
        encoded are in the LRU by then, so a retry does not encode them again).
        """
        if not phrases:
            return np.empty((0, self.dim), dtype=np.float32)
        found, missing = self._from_cache(phrases)
        if missing and self.store is not None:
            stored = await self.store.get_many(list(missing))
            for key, raw in stored.items():
                vector = self._decode(raw)
                if vector is None:
                    continue  # another dimension or a damaged value: encode it again
                phrase = missing.pop(key)
                found[phrase] = vector
                self.store_hits += 1
                self._keep(phrase, vector)
        if missing:
            fresh = await self._encode(list(missing.values()))
            self._add(found, missing, fresh)
            if self.store is not None:
                await self.store.put_many(
                    {key: vector.tobytes() for key, vector in zip(missing, fresh, strict=True)},
                    self.ttl_s)
        return np.stack([found[p] for p in phrases]).astype(np.float32)

    def vectors_here(self, phrases: Sequence[str]) -> np.ndarray:
        """As :meth:`vectors`, blocking and without the shared store (the LRU, then the encoder
        in this thread): for offline scoring (``evaluate``, training), not the event loop."""
        if not phrases:
            return np.empty((0, self.dim), dtype=np.float32)
        found, missing = self._from_cache(phrases)
        if missing:
            self.encoder_calls += 1
            fresh = self._check(np.asarray(self.encoder.encode(list(missing.values()))),
                                len(missing))
            self._add(found, missing, fresh)
        return np.stack([found[p] for p in phrases]).astype(np.float32)

    def _from_cache(self, phrases: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(vectors found in the LRU by phrase, store key -> phrase of the rest), distinct."""
        found: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}
        use_cache = self.cache_size > 0
        prefix = self._key_prefix
        for phrase in dict.fromkeys(phrases):
            # the LRU is this encoder's alone, so it is keyed by the phrase: a hit (most
            # lookups of a running worker) costs no hashing; store keys only for the rest
            hit = self._cache.get(phrase) if use_cache else None
            if hit is None:
                missing[prefix + phrase_digest(phrase)] = phrase
            else:
                found[phrase] = hit
        self.process_hits += len(found)
        return found, missing

    def _add(self, found: dict[str, np.ndarray], missing: dict[str, str],
             fresh: np.ndarray) -> None:
        self.encoded += len(missing)
        for phrase, vector in zip(missing.values(), fresh, strict=True):
            found[phrase] = vector
            self._keep(phrase, vector)

    def _keep(self, phrase: str, vector: np.ndarray) -> None:
        if self.cache_size > 0:
            self._cache[phrase] = vector

    async def _encode(self, phrases: list[str]) -> np.ndarray:
        """float16 ``(len(phrases), dim)`` from one encoder call off the event loop."""
        loop = asyncio.get_running_loop()
        self.encoder_calls += 1
        out = await loop.run_in_executor(self._executor, self.encoder.encode, phrases)
        return self._check(np.asarray(out), len(phrases))

    def _check(self, out: np.ndarray, count: int) -> np.ndarray:
        """The encoder's output as the stored float16, its shape checked."""
        if out.shape != (count, self.dim):
            raise ValueError(f"the encoder returned shape {out.shape} for {count} "
                             f"phrases, expected ({count}, {self.dim})")
        return out.astype(STORED_DTYPE)

    def _decode(self, raw: bytes) -> np.ndarray | None:
        if len(raw) != self.dim * STORED_DTYPE.itemsize:
            log.debug("a stored vector of %d bytes, expected %d: ignored", len(raw),
                      self.dim * STORED_DTYPE.itemsize)
            return None
        return np.frombuffer(raw, dtype=STORED_DTYPE)
