"""Vectors in Redis: one string per vector, one pipelined round trip per call.

Key: ``{prefix}:vec:<encoder id>:<phrase digest>`` (:func:`~worker.vectors.base.vector_key`),
value: the vector's bytes as given (float16, little-endian, from the caller), written with
``SET ... PX`` so every vector expires ``ttl_s`` after its last write.

Reads are a pipeline of ``GET`` and writes one of ``SET``, not ``MGET``/``MSET``: the keys
carry no hash tag, so on Redis Cluster they fall in many slots, which a multi-key command
refuses. redis-py's cluster pipeline splits the commands by node and sends the parts
concurrently (one round trip of latency); on a single Redis the pipeline is one request.
Both are idempotent, so redis-py's retry of a pipeline after a connection error is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisError

from worker.errors import ConfigError, StoreError
from worker.redis_client import RedisClient, describe_error, redis_client

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["RedisVectorStore"]

log = logging.getLogger(__name__)


class RedisVectorStore:
    """:class:`~worker.vectors.base.VectorStore` on Redis or Redis Cluster.

    ``client`` is owned by the store from now on: :meth:`stop` closes it.
    """

    def __init__(self, client: RedisClient, *, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"key prefix must be non-empty, without braces: {prefix!r}")
        self._client = client
        self._prefix = f"{prefix}:vec:"
        self._cluster = isinstance(client, RedisCluster)

    @classmethod
    def from_settings(cls, settings: Settings, *, cluster: bool | None = None) -> RedisVectorStore:
        """A store on a new client for ``settings.redis_url`` (credentials, TLS CA and cluster
        mode as the window store's), under ``INTENT_KEY_PREFIX``."""
        try:
            return cls(redis_client(settings, cluster=cluster), prefix=settings.key_prefix)
        except ValueError as exc:
            raise ConfigError(f"INTENT_KEY_PREFIX={settings.key_prefix!r}: {exc}") from None

    @property
    def client(self) -> RedisClient:
        return self._client

    def redis_key(self, key: str) -> str:
        """The Redis key of a store key."""
        return self._prefix + key

    async def start(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis ping failed: {describe_error(exc)}") from exc

    async def stop(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            log.warning("closing the redis client failed: %s", describe_error(exc))

    async def __aenter__(self) -> RedisVectorStore:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        pipe = self._pipeline()
        for key in keys:
            pipe.get(self._prefix + key)
        try:
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis read of {len(keys)} vectors failed: {describe_error(exc)}") \
                from exc
        return {key: value for key, value in zip(keys, replies, strict=True) if value is not None}

    async def put_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
        if not items:
            return
        pipe = self._pipeline()
        ttl_ms = ttl_s * 1000
        for key, value in items.items():
            pipe.set(self._prefix + key, value, px=ttl_ms)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis write of {len(items)} vectors failed: {describe_error(exc)}") \
                from exc

    def _pipeline(self) -> Pipeline | ClusterPipeline:
        if self._cluster:
            return self._client.pipeline()
        return self._client.pipeline(transaction=False)
