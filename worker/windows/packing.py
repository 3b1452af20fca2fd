"""Redis commands packed by hiredis (C) instead of redis-py's asyncio packer (Python).

redis-py's asyncio connection packs every argument in Python, and the window script's
``EVALSHA`` carries a user's keys, limits and events (~20 arguments per user), so packing is
a large part of the store's client time. ``hiredis.pack_command`` gives the same bytes for
``str`` (UTF-8), ``bytes``, ``int``, ``float`` and ``memoryview`` arguments, in C. Anything
else (multi-word command names, other types, another encoding) goes to redis-py's own packer,
which also raises its usual errors.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

__all__ = ["pack_with_hiredis"]


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if self.encoder.encoding.lower() in ("utf-8", "utf8") and (  # type: ignore[attr-defined]
                (" " not in first) if isinstance(first, str) else (b" " not in first)):
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a type hiredis does not pack: redis-py's packer (and its error)
        return super().pack_command(*args)  # type: ignore[misc]


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_VARIANTS: dict[type, type] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def pack_with_hiredis(client: Redis) -> Redis:
    """``client``, its pool now making connections that pack with hiredis (before any
    connection exists: call it right after creating the client). A pool of another
    connection class is left as it is."""
    pool = client.connection_pool
    pool.connection_class = _VARIANTS.get(pool.connection_class, pool.connection_class)
    return client
