"""Counting what a Redis client sends: redis-py writes each request (a whole pipeline included)
with one ``send_packed_command`` and then reads the replies, so the count of those calls is the
number of round trips."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, ConnectionPool


def counting_client(redis_url: str) -> tuple[aioredis.Redis, list[int]]:
    """A client whose connections count their writes to the socket (``sends[0]``)."""
    sends = [0]

    class CountingConnection(Connection):
        async def send_packed_command(self, *args: object, **kwargs: object) -> None:
            sends[0] += 1
            await super().send_packed_command(*args, **kwargs)

    pool = ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    return aioredis.Redis.from_pool(pool), sends  # the client owns (and closes) the pool


def count_all_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the writes of every connection of the process (``sends[0]``) until the test ends:
    for clients that take no connection class (the async RedisCluster), or that exist already."""
    sends = [0]
    send = Connection.send_packed_command

    async def counting_send(self: Connection, *args: object, **kwargs: object) -> None:
        sends[0] += 1
        await send(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting_send)
    return sends
