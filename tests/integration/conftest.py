"""Fixtures shared by the integration tests: a fresh key prefix and a raw client that cleans up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A raw client to inspect Redis; deletes the test's keys afterwards."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
