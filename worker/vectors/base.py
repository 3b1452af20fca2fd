"""The vector store interface, and the keys of its entries.

A key is ``<encoder id>:<phrase digest>``: the digest is 32 hex characters of BLAKE2b of the
phrase (UTF-8), so keys have one size whatever the phrase, and the encoder id keeps the vectors
of two encoders (another model, other weights, another pooling) apart.

Values are opaque bytes to a store (the caller's float16 vectors); a store never checks them.
Both calls are batch calls: one per micro-batch, whatever its size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

__all__ = ["ENCODER_ID_PATTERN", "VectorStore", "key_prefix", "phrase_digest", "vector_key"]

# letters, digits and . _ - @ + = (no ':' to keep the key's fields apart, no braces: Redis
# Cluster hash tags)
ENCODER_ID_PATTERN = re.compile(r"[A-Za-z0-9._@+=-]{1,128}")


def phrase_digest(phrase: str) -> str:
    """32 hex characters (128 bits) of BLAKE2b of the phrase; not a secret, a name."""
    return hashlib.blake2b(phrase.encode(), digest_size=16, usedforsecurity=False).hexdigest()


def key_prefix(encoder_id: str) -> str:
    """``<encoder id>:``, the start of every key of that encoder; a ValueError for an encoder
    id outside :data:`ENCODER_ID_PATTERN`."""
    if not ENCODER_ID_PATTERN.fullmatch(encoder_id):
        raise ValueError(f"encoder id must match {ENCODER_ID_PATTERN.pattern}, got {encoder_id!r}")
    return f"{encoder_id}:"


def vector_key(encoder_id: str, phrase: str) -> str:
    """``<encoder id>:<phrase digest>`` (see :func:`key_prefix`)."""
    return key_prefix(encoder_id) + phrase_digest(phrase)


class VectorStore(Protocol):
    """Vectors shared beyond one process, by key (:func:`vector_key`).

    Contract:

    - :meth:`get_many` returns only the keys it holds (a missing or expired key is simply not
      in the result); one request to the backend for the whole call.
    - :meth:`put_many` writes every item with the same time to live, replacing what was there
      (the same key always means the same vector, so a race between writers is harmless); one
      request to the backend for the whole call.
    - A backend failure is a :class:`~worker.errors.StoreError` (retriable).
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...

    async def put_many(self, items: Mapping[str, bytes], ttl_s: int) -> None: ...
