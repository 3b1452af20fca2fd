"""The one way to make a Redis client from the settings: URL, ACL user, password, TLS CA and
cluster mode. The stores built on it (windows, event vectors) own and close their client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["RedisClient", "redis_client"]

RedisClient = aioredis.Redis | RedisCluster


def redis_client(settings: Settings, *, cluster: bool | None = None) -> RedisClient:
    """A new client for ``settings.redis_url`` (no I/O until first used); a
    :class:`~redis.asyncio.cluster.RedisCluster` when ``cluster`` (default:
    ``settings.redis_cluster``)."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    use_cluster = settings.redis_cluster if cluster is None else cluster
    factory = RedisCluster.from_url if use_cluster else aioredis.Redis.from_url
    return factory(settings.redis_url, **options)
