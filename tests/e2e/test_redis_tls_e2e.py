"""The worker over Redis TLS for real: ``intent-worker run`` against Tansu and a redis-server
that speaks TLS only (a test CA made here) scores a stream and is ready; with the wrong CA, or a
plaintext URL to the TLS port, it exits non-zero at start-up saying what to fix."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from tests.e2e.helpers import covered_ids, make_events, produce, read_topic, worker_env
from tests.e2e.helpers import worker_process as worker
from tests.support.tls import TlsFiles, make_tls_files, start_tls_redis
from worker.ops.stack import Process


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Process:
    proc = start_tls_redis(tls_files, workdir=tmp_path_factory.mktemp("redis-tls"))
    yield proc
    proc.stop()


def _ready(port: str) -> int:
    """GET /ready: its status, 0 while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0


async def _wait_ready(port: str, proc, timeout_s: float) -> int:
    """Poll /ready until 200, the worker exits or the timeout; the last status."""
    deadline = time.monotonic() + timeout_s
    status = await asyncio.to_thread(_ready, port)
    while status != 200 and proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = await asyncio.to_thread(_ready, port)
    return status


async def test_the_worker_scores_a_stream_over_tls_and_is_ready(kafka_bootstrap, tls_redis,
                                                                tls_files, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, f"rediss://127.0.0.1:{tls_redis.port}/0",
                     INTENT_REDIS_TLS_CA_FILE=str(tls_files.ca), INTENT_SCORER="noop",
                     INTENT_STARTUP_TIMEOUT_S="30")
    events = make_events(300, users=30, seed=16)
    ids = {e["event_id"] for e in events}
    await produce(kafka_bootstrap, env["INTENT_TOPIC_EVENTS"],
                  [(e["user_id"].encode(), orjson.dumps(e)) for e in events])
    log_path = tmp_path / "worker.log"
    with worker(env, log_path) as proc:
        first = await _wait_ready(env["INTENT_WEB_PORT"], proc, timeout_s=60)
        scores = []
        if first == 200:
            scores = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"],
                                      until=lambda r: covered_ids(r) >= ids, timeout_s=180)
        after = await asyncio.to_thread(_ready, env["INTENT_WEB_PORT"])
        alive = proc.poll() is None
    log = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert first == 200 and alive, (first, log[-3000:])
    assert covered_ids(scores) >= ids, (len(ids - covered_ids(scores)), log[-3000:])
    assert after == 200, after
    client = aioredis.Redis.from_url(f"rediss://127.0.0.1:{tls_redis.port}/0",
                                     ssl_ca_certs=str(tls_files.ca))
    try:  # the windows went to the TLS server
        prefix = env["INTENT_KEY_PREFIX"]
        assert len([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]) >= 30
    finally:
        await client.aclose()


async def _start_up_failure(env: dict[str, str], log_path: Path) -> tuple[int, float, str]:
    t0 = time.monotonic()
    with worker(env, log_path) as proc:
        rc = await asyncio.to_thread(proc.wait, 90)
    log = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert rc != 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return rc, time.monotonic() - t0, log.strip().splitlines()[-1]


async def test_the_wrong_ca_stops_the_worker_at_once_naming_the_setting(
        kafka_bootstrap, tls_redis, tls_files, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, f"rediss://127.0.0.1:{tls_redis.port}/0",
                     INTENT_REDIS_TLS_CA_FILE=str(tls_files.other_ca), INTENT_SCORER="noop",
                     INTENT_STARTUP_TIMEOUT_S="60")
    rc, elapsed, last = await _start_up_failure(env, tmp_path / "worker.log")
    assert "CERTIFICATE_VERIFY_FAILED" in last and "failed verification" in last, last
    assert "INTENT_REDIS_TLS_CA_FILE" in last and "INTENT_REDIS_URL" in last, last
    assert elapsed < 30, elapsed  # not retried for the 60 s start-up timeout
    print(f"\nwrong CA: exit {rc} after {elapsed:.1f}s; last line: {last}")


async def test_a_plaintext_url_to_the_tls_port_fails_saying_to_use_rediss(
        kafka_bootstrap, tls_redis, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, f"redis://127.0.0.1:{tls_redis.port}/0",
                     INTENT_SCORER="noop", INTENT_STARTUP_TIMEOUT_S="3")
    rc, elapsed, last = await _start_up_failure(env, tmp_path / "worker.log")
    assert "not reachable after 3s" in last and "reset" in last, last
    assert "rediss://" in last and "INTENT_REDIS_URL" in last, last
    print(f"\nplaintext URL to the TLS port: exit {rc} after {elapsed:.1f}s; last line: {last}")
