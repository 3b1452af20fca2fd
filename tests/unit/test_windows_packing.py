"""Commands packed by hiredis are byte for byte what redis-py's packer sends."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from worker.windows.packing import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
    pack_with_hiredis,
)


@pytest.mark.parametrize("args", [
    ("EVALSHA", "a" * 40, 3, "p:{u1}:w", "p:{u1}:e", "p:{u1}:v", "50", "", "tok:1",
     1_700_000_000_000, "é-1", b'{"query":"\\u00e9 \\n"}'),
    ("ZADD", "k", "NX", 1.5, "m", 0.1 + 0.2, "n", -3, "o"),
    ("SET", "k", b"\x00\xff" * 40_000),  # above redis-py's buffer cutoff
    ("SET", "k", memoryview(b"abc")),
    ("CLIENT SETNAME", "worker"),  # a multi-word name: redis-py's packer
])
def test_same_bytes_as_redis_py(args: tuple) -> None:
    ours, theirs = HiredisConnection(), Connection()
    assert b"".join(map(bytes, ours.pack_command(*args))) == \
        b"".join(map(bytes, theirs.pack_command(*args)))
    assert b"".join(map(bytes, ours.pack_commands([args, args]))) == \
        b"".join(map(bytes, theirs.pack_commands([args, args])))


def test_types_redis_py_refuses_still_fail_the_same_way() -> None:
    for bad in (True, None, [1]):
        with pytest.raises(DataError):
            HiredisConnection().pack_command("SET", "k", bad)


def test_another_encoding_is_left_to_redis_py() -> None:
    conn = HiredisConnection(encoding="latin-1")
    expected = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"
    assert b"".join(conn.pack_command("SET", "k", "é")) == expected


def test_clients_get_the_packing_variant_of_their_connection_class() -> None:
    cases = {
        "redis://localhost:6379/0": HiredisConnection,
        "rediss://localhost:6380/0": HiredisSSLConnection,
        "unix:///tmp/redis.sock": HiredisUnixConnection,
    }
    for url, expected in cases.items():
        client = pack_with_hiredis(aioredis.Redis.from_url(url))
        assert client.connection_pool.connection_class is expected
        assert issubclass(expected, (Connection, SSLConnection, UnixDomainSocketConnection))

    class Custom(Connection):
        pass

    client = aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=Custom))
    assert pack_with_hiredis(client).connection_pool.connection_class is Custom
