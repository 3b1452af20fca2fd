"""Anomaly alerts end to end: real broker (Tansu), real Redis, the worker as a process.

The no-op scorer keeps this fast (out-of-character purchases need real scores: covered by
the pipeline's unit tests). Checked: an injected purchase burst, a bot session and a price
outlier each give exactly one alert with its evidence, keyed by user; replaying every
event through a second consumer group on the same Redis state (a redelivery of every
batch) gives no second alert.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.e2e.helpers import (
    burst_and_bot,
    event,
    produce,
    read_topic,
    worker_env,
    worker_process,
)
from worker.events import validate

T0 = 1_700_000_000_000


def phase_one() -> list[dict]:
    burst, bot = burst_and_bot(T0)
    viewers = [event(f"tv-{i}", f"viewer{i}", T0 + i * 1000, pid=f"tv{i % 5}",
                     category="electronics.tv", price=500.0 + 10 * i) for i in range(30)]
    return burst + bot + viewers


def phase_two() -> list[dict]:
    return [event("whale-v", "whale", T0 + 60_000, pid="tv1", category="electronics.tv",
                  price=510.0),
            event("whale-p", "whale", T0 + 90_000, "purchase", pid="tv9",
                  category="electronics.tv", price=250_000.0)]


def messages(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["user_id"].encode(), orjson.dumps(e)) for e in events]


def covers(ids: set[str], times: int = 1):
    def done(records: list[dict]) -> bool:
        seen: dict[str, int] = {}
        for r in records:
            for eid in r["event_ids"]:
                seen[eid] = seen.get(eid, 0) + 1
        return all(seen.get(i, 0) >= times for i in ids)
    return done


@pytest.fixture(scope="module")
async def alerts_run(kafka_bootstrap, redis_url, tmp_path_factory):
    env = worker_env(kafka_bootstrap, redis_url, INTENT_SCORER="noop", INTENT_BATCH_MAX="64")
    one, two = phase_one(), phase_two()
    logs = tmp_path_factory.mktemp("alerts")
    scores_topic, alerts_topic = env["INTENT_TOPIC_SCORES"], env["INTENT_TOPIC_ALERTS"]
    with worker_process(env, logs / "worker-1.log"):
        await produce(kafka_bootstrap, env["INTENT_TOPIC_EVENTS"], messages(one))
        # the category's prices must be in Redis before the outlier's batch
        await read_topic(kafka_bootstrap, scores_topic,
                         until=covers({e["event_id"] for e in one}), timeout_s=120)
        await produce(kafka_bootstrap, env["INTENT_TOPIC_EVENTS"], messages(two))
        all_ids = {e["event_id"] for e in one + two}
        await read_topic(kafka_bootstrap, scores_topic, until=covers(all_ids), timeout_s=120)
        first = await read_topic(kafka_bootstrap, alerts_topic, until=lambda r: len(r) >= 3,
                                 timeout_s=30)
        metrics = _get_text(f"http://127.0.0.1:{env['INTENT_WEB_PORT']}/metrics")
    # every batch again, through a new consumer group, on the same Redis state
    replay_env = {**env, "INTENT_APP_ID": f"{env['INTENT_APP_ID']}-replay-{uuid.uuid4().hex[:4]}"}
    with worker_process(replay_env, logs / "worker-2.log"):
        await read_topic(kafka_bootstrap, scores_topic, until=covers(all_ids, times=2),
                         timeout_s=120)
        after = await read_topic(kafka_bootstrap, alerts_topic, until=lambda r: len(r) > 3,
                                 timeout_s=8)
    return {"first": first, "after": after, "metrics": metrics, "events": len(all_ids),
            "log": (logs / "worker-1.log").read_text(errors="replace")[-3000:]}


def _get_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
        return resp.read().decode()


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (
                line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_count_events_alerts_and_latency(alerts_run) -> None:
    text, n = alerts_run["metrics"], alerts_run["events"]
    assert _sample(text, "intent_events_in_total") == n
    assert _sample(text, "intent_events_scored_total") == n
    for kind in ("bot_cadence", "purchase_velocity", "price_outlier"):
        assert _sample(text, f'intent_alerts_total{{kind="{kind}"}}') == 1
    assert (_sample(text, "intent_event_to_score_seconds_count")
            == _sample(text, "intent_scores_total"))
    assert _sample(text, "intent_batches_total") >= 2
    # one window read per score record, from the window cache (hit) or whole (miss)
    hits = _sample(text, 'intent_window_cache_total{result="hit"}')
    misses = _sample(text, 'intent_window_cache_total{result="miss"}')
    assert hits + misses == _sample(text, "intent_scores_total")
    assert 'intent_model_info{name="noop"' in text
    assert "intent_consumer_lag{" in text


async def test_each_injected_anomaly_gives_exactly_one_alert(alerts_run) -> None:
    alerts = alerts_run["first"]
    assert sorted((a["user_id"], a["kind"]) for a in alerts) == [
        ("bot", "bot_cadence"), ("burst", "purchase_velocity"), ("whale", "price_outlier"),
    ], alerts_run["log"]
    for a in alerts:
        validate("anomaly-alert.v1", a)


async def test_alerts_carry_their_evidence(alerts_run) -> None:
    by_kind = {a["kind"]: a for a in alerts_run["first"]}
    burst = by_kind["purchase_velocity"]
    assert burst["evidence"]["event_ids"] == [f"burst-p{i}" for i in range(5)]
    assert burst["evidence"]["purchases"] == 5
    bot = by_kind["bot_cadence"]
    assert bot["evidence"]["event_ids"] == [f"bot-{i}" for i in range(12)]
    price = by_kind["price_outlier"]
    assert price["evidence"]["event_ids"] == ["whale-p"]
    assert price["evidence"]["samples"] == 30 and price["evidence"]["direction"] == "above"


async def test_redelivered_batches_give_no_second_alert(alerts_run) -> None:
    assert len(alerts_run["after"]) == 3
    assert ({a["alert_id"] for a in alerts_run["after"]}
            == {a["alert_id"] for a in alerts_run["first"]})
