"""The one way to make a Redis client from the settings: URL, ACL user, password, TLS CA and
cluster mode. The stores built on it (windows, event vectors) own and close their client. How
a Redis failure reads in their errors, and what to fix when a first connection fails because of
those settings (TLS trouble)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["RedisClient", "certificate_rejected", "connection_hint", "describe_error", "explain",
           "queue_script", "redis_client", "uses_tls"]

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
    or a certificate to fix, not an outage to wait out."""
    return _verification_error(exc) is not None


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    return next((e for e in _causes(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)


def describe_error(exc: BaseException) -> str:
    """``exc`` in one line for a store's error or log line: its type and message. No hint of
    what to fix: on a running worker a reset or a timeout is an outage, not a setting."""
    return f"{type(exc).__name__}: {exc}"


def uses_tls(url: str) -> bool:
    """Whether a Redis URL asks for TLS (``rediss://``, in any case, as redis-py reads it)."""
    return urlsplit(url).scheme.lower() == "rediss"


# OpenSSL's verify codes (``X509_V_ERR_*``) of a server certificate that failed verification
_NOT_VALID_NOW = {9, 10}  # not yet valid, expired
_NOT_FOR_THIS_HOST = {62, 64}  # hostname mismatch, IP address mismatch
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}  # issuer not found or not trusted, self-signed

# ``ssl.SSLError.reason`` of a plaintext server answering a TLS client (or a closed connection)
_NOT_TLS = {"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG"}


def _certificate_hint(error: ssl.SSLCertVerificationError) -> str:
    code = getattr(error, "verify_code", None)
    if code in _NOT_VALID_NOW:
        return ("the server's TLS certificate is not valid now (expired, or not valid yet): "
                "renew it, and check this host's clock")
    if code in _NOT_FOR_THIS_HOST:
        return ("the host in INTENT_REDIS_URL is not one the server's TLS certificate is for: "
                "name a host or address from the certificate's subject alternative names")
    if code in _UNKNOWN_ISSUER:
        return ("the server's TLS certificate is signed by a CA this worker does not trust: set "
                "INTENT_REDIS_TLS_CA_FILE to the CA that signed it (unset: the system CAs)")
    return ("the server's TLS certificate failed verification: fix the certificate, or set "
            "INTENT_REDIS_TLS_CA_FILE to the CA that signed it")


def connection_hint(exc: BaseException, *, tls: bool) -> str | None:
    """What to fix when connecting to Redis failed with ``exc`` for a reason the settings can
    cause, or ``None``; ``tls``: the URL is ``rediss://``. Read from OpenSSL's codes, not the
    messages: a server certificate that failed verification by its ``verify_code`` (not valid
    now, not for this host, unknown issuer); a TLS alert from the server (``reason``
    ``*_ALERT_*``: it refused this client, as a mutual-TLS server does without a client
    certificate or with one signed by a CA it does not trust); a handshake that met no TLS
    server. A server that speaks TLS only resets a plaintext connection, and one that wants a
    client certificate may reset a TLS one; a TLS client of a plaintext port waits for a
    handshake that never comes (``redis-py``'s ``TimeoutError``). These are settings to fix only
    when they repeat: give the hint with the final error, not on every retry."""
    causes = list(_causes(exc))
    rejected = _verification_error(exc)
    if rejected is not None:
        return _certificate_hint(rejected)
    reasons = [getattr(e, "reason", None) or "" for e in causes if isinstance(e, ssl.SSLError)]
    reset = any(isinstance(e, ConnectionResetError) for e in causes)
    if tls and (any("_ALERT_" in r for r in reasons) or (reset and not reasons)):
        return ("the server refused this client during the TLS handshake: if it asks for client "
                "certificates (mutual TLS), INTENT_REDIS_URL needs ssl_certfile and ssl_keyfile "
                "in its query, a certificate signed by a CA the server trusts")
    if tls and any(r in _NOT_TLS for r in reasons):
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


def explain(exc: BaseException, settings: Settings | None, *, otherwise: str | None = None) -> str:
    """``exc``'s message and, when ``settings`` can be its cause, what to fix (else
    ``otherwise``, when given; ``settings`` ``None``: unknown, no hint from them): the error to
    show for a failed first connection to Redis (start-up, ``forget``), never on a running
    worker's data path."""
    hint = (connection_hint(exc, tls=uses_tls(settings.redis_url)) if settings is not None
            else None) or otherwise
    message = str(exc).rstrip(".")
    return f"{message}; {hint}" if hint else message


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
