"""Fixtures shared by the integration tests: a fresh key prefix, a raw client that cleans up,
and a 3-node Redis Cluster (one per test module that asks for it)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from worker.ops.stack import Process, free_port, redis_binary, start_redis

NODES = 3


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


def cluster_ok(cli: str, port: int) -> bool:
    out = subprocess.run(
        [cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True, timeout=10
    )
    return "cluster_state:ok" in out.stdout


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli not found (needed to create a cluster)")
    version = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    if int(version.split("v=")[1].split(".")[0]) < 7:
        pytest.skip(f"redis-server >= 7 needed for --cluster-port: {version.strip()}")
    procs: list[Process] = []
    try:
        for i in range(NODES):
            workdir: Path = tmp_path_factory.mktemp(f"redis-cluster-{i}")
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-port", str(free_port()),
            ]  # fmt: skip
            procs.append(start_redis(extra=extra, workdir=workdir))
        ports = [p.port for p in procs]
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(cluster_ok(cli, port) for port in ports):
            if time.monotonic() > deadline:
                pytest.fail("redis cluster did not reach cluster_state:ok in 30s")
            time.sleep(0.1)
        yield ports
    finally:
        for p in procs:
            p.stop()
