"""The worker over Redis TLS for real: ``intent-worker run`` against Tansu and a redis-server
that speaks TLS only (a test CA from tests/support/tls.py) scores a stream and is ready; with the
wrong CA, or a plaintext URL to the TLS port, it exits non-zero at start-up saying what to fix."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from tests.e2e.helpers import covered_ids, make_events, produce, read_topic, wait_ready, worker_env
from tests.e2e.helpers import worker_process as worker


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
    ready = f"http://127.0.0.1:{env['INTENT_WEB_PORT']}/ready"
    with worker(env, log_path) as proc:
        first = await asyncio.to_thread(wait_ready, ready, timeout_s=60, proc=proc)
        scores = []
        if first == 200:
            scores = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"],
                                      until=lambda r: covered_ids(r) >= ids, timeout_s=180)
        after = await asyncio.to_thread(wait_ready, ready, timeout_s=0)
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
        rc = await asyncio.to_thread(proc.wait, 240)
    log = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert rc != 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return rc, time.monotonic() - t0, log.strip().splitlines()[-1]


async def test_the_wrong_ca_stops_the_worker_at_once_naming_the_setting(
        kafka_bootstrap, tls_redis, tls_files, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, f"rediss://127.0.0.1:{tls_redis.port}/0",
                     INTENT_REDIS_TLS_CA_FILE=str(tls_files.other_ca), INTENT_SCORER="noop",
                     INTENT_STARTUP_TIMEOUT_S="180")
    rc, elapsed, last = await _start_up_failure(env, tmp_path / "worker.log")
    assert "CERTIFICATE_VERIFY_FAILED" in last and "does not trust" in last, last
    assert "INTENT_REDIS_TLS_CA_FILE" in last, last
    # not retried for the 180 s start-up timeout (the time includes imports and topic set-up)
    assert elapsed < 90, elapsed
    print(f"\nwrong CA: exit {rc} after {elapsed:.1f}s; last line: {last}")


async def test_a_plaintext_url_to_the_tls_port_fails_saying_to_use_rediss(
        kafka_bootstrap, tls_redis, tmp_path) -> None:
    env = worker_env(kafka_bootstrap, f"redis://127.0.0.1:{tls_redis.port}/0",
                     INTENT_SCORER="noop", INTENT_STARTUP_TIMEOUT_S="3")
    rc, elapsed, last = await _start_up_failure(env, tmp_path / "worker.log")
    assert "not reachable after 3s" in last and "reset" in last, last
    assert "rediss://" in last and "INTENT_REDIS_URL" in last, last
    print(f"\nplaintext URL to the TLS port: exit {rc} after {elapsed:.1f}s; last line: {last}")
