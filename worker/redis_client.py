"""The one way to make a Redis client from the settings: URL, ACL user, password, TLS CA and
cluster mode. The stores built on it (windows, event vectors) own and close their client. And
what to fix when a connection fails because of those settings (TLS trouble)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["RedisClient", "certificate_rejected", "connection_hint", "queue_script", "redis_client"]

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


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def certificate_rejected(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a server certificate that failed TLS verification: a setting
    to fix, not an outage to wait out."""
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc))


def connection_hint(exc: BaseException, *, tls: bool) -> str | None:
    """What to fix when connecting to Redis failed with ``exc`` for a reason the settings can
    cause, or ``None``; ``tls``: the URL is ``rediss://``. A server that speaks TLS only resets a
    plaintext connection; one that wants a client certificate sends a TLS alert or resets the
    connection; ``redis-py`` reports each as a ``ConnectionError``. A TLS client of a plaintext
    port waits for a handshake that never comes (``redis-py``'s ``TimeoutError``)."""
    causes = list(_causes(exc))
    if certificate_rejected(exc):
        return ("the server's TLS certificate failed verification: set "
                "INTENT_REDIS_TLS_CA_FILE to the CA that signed it (unset: the system CAs) and "
                "name a host the certificate is for in INTENT_REDIS_URL")
    reset = any(isinstance(e, ConnectionResetError) for e in causes)
    tls_errors = [e for e in causes if isinstance(e, ssl.SSLError)]
    if tls and (reset or any("ALERT" in str(e) and "CERTIFICATE" in str(e) for e in tls_errors)):
        # a server that wants a client certificate sends an alert, or resets the connection
        return ("the server ended the TLS connection: if it asks for client certificates "
                "(mutual TLS), INTENT_REDIS_URL needs ssl_certfile and ssl_keyfile in its query "
                "(a certificate its CA signed)")
    if tls and tls_errors:
        return ("the TLS handshake failed: check that INTENT_REDIS_URL names the server's TLS "
                "port (rediss:// is for TLS, redis:// for plaintext)")
    if tls and any(isinstance(e, RedisTimeoutError) for e in causes):
        # a plaintext server waits for a command line while the client waits for its handshake
        return ("no answer to the TLS handshake: if that port speaks plaintext, "
                "INTENT_REDIS_URL must start with redis://")
    if not tls and reset:
        return ("the server reset the connection: if it speaks TLS only, INTENT_REDIS_URL must "
                "start with rediss:// (with INTENT_REDIS_TLS_CA_FILE for a private CA)")
    return None


def queue_script(pipe: Any, sha: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]], *,
                 cluster: bool, head: Sequence[Any] = ()) -> int:
    """Queue a script on ``pipe`` for ``calls`` (each: its keys, which share one hash tag, and
    its arguments): ONE ``EVALSHA`` over every call's keys, ``head`` then each call's arguments
    (one command to pack, send and parse: redis-py's cost is per command); on a cluster, where
    a script's keys must share a slot, one per call, which the cluster pipeline sends to each
    node at once. ``execute_command``, because redis-py refuses ``evalsha`` on cluster
    pipelines (these never cross a slot). Returns the number of commands queued."""
    if not calls:
        return 0
    if cluster:
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *head, *args)
        return len(calls)
    keys = [k for call_keys, _ in calls for k in call_keys]
    args = [a for _, call_args in calls for a in call_args]
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *head, *args)
    return 1
