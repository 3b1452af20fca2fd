"""The worker end to end: real broker (Tansu), real Redis, real default model."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime

import orjson
import pytest
import redis.asyncio as aioredis

from tests.e2e.helpers import (
    bad_messages,
    make_events,
    produce,
    read_topic,
    worker_env,
    worker_process,
)
from worker.events import validate
from worker.latest import latest_score
from worker.settings import load_settings

MAX_BYTES = 4096


@pytest.fixture(scope="module")
async def e2e_run(kafka_bootstrap, redis_url, tmp_path_factory):
    """Publish 1,200 valid events (100 users) and 11 bad ones; run the worker until all are out."""
    env = worker_env(kafka_bootstrap, redis_url, INTENT_MAX_EVENT_BYTES=str(MAX_BYTES),
                     INTENT_BATCH_MAX="128", INTENT_WINDOW_MAX_EVENTS="20",
                     INTENT_EXPLAIN="on")
    events = make_events(1200, users=100)
    bad = bad_messages(MAX_BYTES)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, ev in enumerate(events):
        messages.append((ev["user_id"].encode(), orjson.dumps(ev)))
        if i % 100 == 50 and bad:
            key, value, _ = bad.pop()
            messages.append((key, value))
    messages.extend((k, v) for k, v, _ in bad)
    valid_ids = {e["event_id"] for e in events}
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    await produce(kafka_bootstrap, env["INTENT_TOPIC_EVENTS"], messages)
    with worker_process(env, log_path) as proc:
        def covered(records):
            return {eid for r in records for eid in r["event_ids"]} >= valid_ids

        scores = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"], until=covered,
                                  timeout_s=240)
        n_bad = len(bad_messages(MAX_BYTES))
        dlq = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_DLQ"],
                               until=lambda r: len(r) >= n_bad, timeout_s=60)
        alive = proc.poll() is None
        probes = {path: _get(f"http://127.0.0.1:{env['INTENT_WEB_PORT']}{path}")
                  for path in ("/health", "/ready")}
    return {"probes": probes, "env": env, "events": events, "scores": scores, "dlq": dlq,
            "alive": alive, "log": log_path.read_text(errors="replace"),
            "returncode": proc.returncode}


def _get(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def test_health_and_ready_endpoints(e2e_run):
    status, body = e2e_run["probes"]["/health"]
    assert status == 200 and body["status"] == "ok"
    status, body = e2e_run["probes"]["/ready"]
    assert status == 200 and body["status"] == "ready"
    assert body["model"]["name"] == "intent-minilm"


async def test_every_valid_event_is_covered_by_exactly_one_score(e2e_run):
    valid_ids = [e["event_id"] for e in e2e_run["events"]]
    counts = Counter(eid for r in e2e_run["scores"] for eid in r["event_ids"])
    assert set(counts) == set(valid_ids), e2e_run["log"][-3000:]
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1][:10]


async def test_score_records_follow_the_schema(e2e_run):
    assert e2e_run["scores"]
    by_id = {e["event_id"]: e for e in e2e_run["events"]}
    for record in e2e_run["scores"]:
        validate("intent-score.v2", record)
        assert 0.0 <= record["score"] <= 1.0
        assert record["latency_ms"] >= 0
        assert record["event_id"] in record["event_ids"]
        assert {by_id[e]["user_id"] for e in record["event_ids"]} == {record["user_id"]}
        assert record["model"]["name"] and record["model"]["version"]


async def test_score_records_carry_an_explanation_that_adds_up(e2e_run):
    by_id = {e["event_id"]: e for e in e2e_run["events"]}
    for record in e2e_run["scores"]:
        e = record["explanation"]  # INTENT_EXPLAIN=on, the shipped pooled model
        total = (e["baseline"]["logit"] + sum(f["contribution"] for f in e["features"])
                 + e["other_features"] + e["events_total"])
        assert total == pytest.approx(e["logit"], abs=1e-6)
        assert 1 / (1 + math.exp(-e["logit"])) == pytest.approx(record["score"], abs=1e-6)
        assert 1 <= len(e["events"]) <= min(5, record["window"]["events"])
        for event in e["events"]:
            assert by_id[event["event_id"]]["user_id"] == record["user_id"]
            assert by_id[event["event_id"]]["event_type"] == event["event_type"]


async def test_bad_messages_reach_the_dlq_with_their_reason(e2e_run):
    expected = {k.decode(): reason for k, _, reason in bad_messages(MAX_BYTES)}
    got = {}
    for record in e2e_run["dlq"]:
        validate("dead-letter.v1", record)
        assert record["topic"] == e2e_run["env"]["INTENT_TOPIC_EVENTS"]
        assert record["offset"] >= 0
        got[record["key"]] = record["reason"]
    assert got == expected


async def test_worker_stays_up_and_exits_cleanly(e2e_run):
    assert e2e_run["alive"], e2e_run["log"][-3000:]
    assert "Traceback" not in e2e_run["log"], e2e_run["log"][-3000:]


async def test_redis_windows_hold_no_duplicates(e2e_run, redis_url):
    prefix = e2e_run["env"]["INTENT_KEY_PREFIX"]
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert keys
        from worker.settings import load_settings
        from worker.windows import RedisWindowStore

        settings = load_settings(redis_url=redis_url, key_prefix=prefix)
        store = RedisWindowStore.from_settings(settings)
        users = sorted({e["user_id"] for e in e2e_run["events"]})
        windows = await store.append({u: [] for u in users})  # an empty append reads
        await store.stop()
        for user, window in windows.items():
            ids = [e["event_id"] for e in window]
            assert len(ids) == len(set(ids)), user
            assert 0 < len(ids) <= 20
            assert [e["ts"] for e in window] == sorted(e["ts"] for e in window)
    finally:
        await client.aclose()


def _newest_published(records: list[dict]) -> dict[str, dict]:
    """Each user's published record whose newest covered event is the latest by event time
    (ties by event id): the one the worker keeps for lookups."""
    def order(r: dict) -> tuple[datetime, str]:
        return datetime.fromisoformat(r["event_ts"]), r["event_id"]

    newest: dict[str, dict] = {}
    for r in records:
        held = newest.get(r["user_id"])
        if held is None or order(r) > order(held):
            newest[r["user_id"]] = r
    return newest


async def test_the_latest_score_of_every_user_is_the_published_one(e2e_run, redis_url):
    newest = _newest_published(e2e_run["scores"])
    assert len(newest) == len({e["user_id"] for e in e2e_run["events"]})
    settings = load_settings(redis_url=redis_url, key_prefix=e2e_run["env"]["INTENT_KEY_PREFIX"])
    client = aioredis.from_url(redis_url)
    try:
        stored = {user: await latest_score(client, user, settings) for user in newest}
    finally:
        await client.aclose()
    assert stored == newest


def test_the_score_command_prints_the_published_score(e2e_run):
    env = {**os.environ, **e2e_run["env"]}
    newest = _newest_published(e2e_run["scores"])
    for user in sorted(newest)[:3]:
        out = subprocess.run([sys.executable, "-m", "worker.cli", "score", user, "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        got = orjson.loads(out.stdout)
        assert got["score"] == newest[user]["score"] and got == newest[user]
    out = subprocess.run([sys.executable, "-m", "worker.cli", "score", "nobody"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no score for user 'nobody'" in out.stderr


def test_explain_and_score_commands_agree_with_the_published_record(e2e_run):
    """For a user, ``intent-worker explain`` (the window in Redis, scored now) and ``intent-worker
    score`` (the record kept in Redis) give the score the worker published."""
    env = {**os.environ, **e2e_run["env"]}
    newest = _newest_published(e2e_run["scores"])
    for user in sorted(newest)[:2]:
        run = [sys.executable, "-m", "worker.cli"]
        explained = subprocess.run([*run, "explain", user, "--json"], env=env,
                                   capture_output=True, text=True, timeout=180)
        assert explained.returncode == 0, explained.stderr
        kept = subprocess.run([*run, "score", user, "--json"], env=env, capture_output=True,
                              text=True, timeout=120)
        report, record = orjson.loads(explained.stdout), orjson.loads(kept.stdout)
        assert record["score"] == newest[user]["score"]
        assert report["score"] == pytest.approx(record["score"], abs=1e-6)
        assert report["window"][0]["event_id"] == record["event_id"]  # the newest event
        assert report["explanation"]["logit"] == pytest.approx(
            record["explanation"]["logit"], abs=1e-6)
