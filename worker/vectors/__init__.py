"""Event vectors kept between batches, processes and workers: an interface and its stores.

A vector is the encoder's pooled output for one event phrase, stored as float16 bytes under a
key made of the encoder's id and a hash of the phrase (:func:`vector_key`), so two encoders
never share a vector and a phrase is encoded once per encoder, not once per worker.
"""

from worker.vectors.base import VectorStore, key_prefix, phrase_digest, vector_key
from worker.vectors.memory import MemoryVectorStore
from worker.vectors.redis_store import RedisVectorStore

__all__ = ["MemoryVectorStore", "RedisVectorStore", "VectorStore", "key_prefix", "phrase_digest",
           "vector_key"]
