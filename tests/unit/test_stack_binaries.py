"""A missing system program (redis-server, prometheus) is an install to fix: one error type and
one message, saying to run ./bootstrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.ops.stack import redis_binary, start_prometheus, start_redis


@pytest.mark.parametrize("start", [
    lambda tmp: redis_binary(),
    lambda tmp: start_redis(workdir=tmp),
])
def test_without_redis_server_on_path_the_error_says_to_run_bootstrap(
        start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^redis-server not found on PATH: run \./bootstrap "
                                          r"\(Debian: apt-get install -y redis-server\)$"):
        start(tmp_path)


def test_without_prometheus_on_path_the_error_says_to_run_bootstrap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^prometheus not found on PATH: run \./bootstrap "
                                          r"\(Debian: apt-get install -y prometheus\)$"):
        start_prometheus(tmp_path / "prometheus.yml", workdir=tmp_path)
