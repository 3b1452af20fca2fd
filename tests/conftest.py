"""Session-scoped real services: a Tansu broker and a redis-server on free ports (and, from
tests/support/tls.py, a redis-server that speaks TLS only, with its certificates)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.ops.stack import Process, start_redis, start_tansu

pytest_plugins = ["tests.support.tls"]


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    proc = start_tansu(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tansu: Process) -> str:
    return f"127.0.0.1:{tansu.port}"


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    proc = start_redis(workdir=tmp_path_factory.mktemp("redis"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_proc: Process) -> str:
    return f"redis://127.0.0.1:{redis_proc.port}/0"
