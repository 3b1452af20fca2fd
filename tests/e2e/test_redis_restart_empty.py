"""Redis restarting empty (no persistence) under a running worker: real broker (Tansu), a
redis-server of this module's own without RDB or AOF (restarted on the same port), the worker
as a process with the no-op scorer.

The run: a purchase burst, a bot session and background traffic, all scored and alerted; then
a second stream during which Redis is stopped and started again empty; then every event again
through a second worker (a new consumer group from the earliest offset) on the emptied Redis.
Checked: every event is covered; the worker counts the loss once on /metrics and logs it; its
readiness gauge says 0 while Redis is away (the scrape still answers) and 1 after; the windows
after the restart hold only events written after it, none from before; the alerts the lost
cooldowns let through again carry the same alert_id and contents as the first ones.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.e2e.helpers import (
    burst_and_bot,
    covered_ids,
    make_events,
    produce,
    produce_logged,
    read_topic,
    read_windows,
    wait_for,
    wait_log,
    worker_env,
    worker_process,
)
from worker.ops.stack import free_port, start_redis

READY = "[^Worker]: Ready"
LOST = "Redis lost the worker's state (marker "
T0 = 1_700_000_000_000
WINDOW_MAX = 500  # above any user's event count here: a window holds all of a user's events
ENV = {
    "INTENT_SCORER": "noop",
    "INTENT_BATCH_MAX": "64",
    "INTENT_BATCH_WAIT_MS": "50",
    "INTENT_KAFKA_SESSION_TIMEOUT_S": "6",
    "INTENT_WINDOW_MAX_EVENTS": str(WINDOW_MAX),
    "INTENT_REDIS_STATE_CHECK_S": "1",
}


def anomalies() -> list[dict]:
    """A purchase burst (7 purchases in 3 minutes) and a bot (20 views 100 ms apart)."""
    burst, bot = burst_and_bot(T0)
    return burst + bot


def keyed(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["user_id"].encode(), orjson.dumps(e)) for e in events]


class RestartableRedis:
    """A redis-server without persistence on a fixed port: a restart comes back empty."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.proc = start_redis(self.port, workdir=workdir)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.stop()

    def start(self) -> None:
        self.proc = start_redis(self.port, workdir=self.workdir)


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test URL
        return resp.read().decode()


def sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


async def read_all_timed(bootstrap: str, topic: str) -> list[tuple[int, dict]]:
    """Every record of ``topic`` now, with its Kafka timestamp (ms; the worker's send time)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or await _partitions(consumer, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, dict]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"{topic} not read to its end in 30s"
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((m.timestamp, orjson.loads(m.value)) for m in msgs)
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001
    return consumer.partitions_for_topic(topic) or set()


def alert_contents(alert: dict) -> dict:
    """An alert without ``detected_at`` (the publishing worker's wall clock)."""
    return {k: v for k, v in alert.items() if k != "detected_at"}


@pytest.fixture(scope="module")
async def restart_run(kafka_bootstrap, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("redis-empty")
    redis = RestartableRedis(workdir)
    env = worker_env(kafka_bootstrap, redis.url, **ENV)
    topic, scores, alerts = (env["INTENT_TOPIC_EVENTS"], env["INTENT_TOPIC_SCORES"],
                             env["INTENT_TOPIC_ALERTS"])
    metrics_url = f"http://127.0.0.1:{env['INTENT_WEB_PORT']}/metrics"
    # before: the anomalies and background traffic; during: a second stream over the restart,
    # within the same hour of event time (a window spans an hour: nothing is trimmed by age)
    before = anomalies() + make_events(600, users=20, seed=31)
    during = make_events(1500, users=20, seed=32, start_ms=T0 + 700_000)
    logs = tmp_path_factory.mktemp("restart-empty")
    loop = asyncio.get_running_loop()
    run: dict = {"before": before, "during": during, "env": env}
    try:
        with worker_process(env, logs / "worker-1.log") as proc:
            assert await wait_log(logs / "worker-1.log", READY, timeout_s=60, proc=proc)
            await produce(kafka_bootstrap, topic, keyed(before))
            ids = {e["event_id"] for e in before}
            await read_topic(kafka_bootstrap, scores, timeout_s=120,
                             until=lambda rs: covered_ids(rs) >= ids)
            anomalous = await read_topic(kafka_bootstrap, alerts, timeout_s=30,
                                         until=lambda rs: {"burst", "bot"} <= _users(rs))
            feeder = asyncio.ensure_future(
                produce_logged(kafka_bootstrap, topic, keyed(during), rate=100))
            await read_topic(kafka_bootstrap, scores, timeout_s=60,
                             until=lambda rs: len(covered_ids(rs) - ids) >= 300)
            run["stopped_ms"] = int(time.time() * 1000)
            redis.stop()
            t0 = time.monotonic()
            run["scrape_down"] = await loop.run_in_executor(None, get_text, metrics_url)
            run["scrape_down_s"] = time.monotonic() - t0
            await asyncio.sleep(2)
            redis.start()
            run["started_ms"] = int(time.time() * 1000)
            t_up = time.monotonic()
            await wait_for(lambda: LOST in (logs / "worker-1.log").read_text(errors="replace"),
                           timeout_s=20, every_s=0.05)
            run["noticed_s"] = time.monotonic() - t_up
            await feeder
            every = ids | {e["event_id"] for e in during}
            await read_topic(kafka_bootstrap, scores, timeout_s=120,
                             until=lambda rs: covered_ids(rs) >= every)
            run["scrape_after"] = await loop.run_in_executor(None, get_text, metrics_url)
            users = sorted({e["user_id"] for e in before + during})
            run["windows"] = await read_windows(redis.url, env["INTENT_KEY_PREFIX"], users,
                                                max_events=WINDOW_MAX)
            run["scores_timed"] = await read_all_timed(kafka_bootstrap, scores)
            run["alive"] = proc.poll() is None
        run["log"] = (logs / "worker-1.log").read_text(errors="replace")
        # every event again, through a new consumer group, on the emptied Redis
        replay = {**env, "INTENT_APP_ID": f"{env['INTENT_APP_ID']}-replay-{uuid.uuid4().hex[:4]}",
                  "INTENT_WEB_PORT": str(free_port())}
        run["replay_started_ms"] = int(time.time() * 1000)
        first_ids = {a["alert_id"] for a in anomalous if a["user_id"] in ("burst", "bot")}
        with worker_process(replay, logs / "worker-2.log") as proc:
            assert await wait_log(logs / "worker-2.log", READY, timeout_s=60, proc=proc)
            await read_topic(kafka_bootstrap, scores, timeout_s=120,
                             until=lambda rs: _covered_twice(rs, ids))
            await read_topic(kafka_bootstrap, alerts, timeout_s=30,
                             until=lambda rs: _sent_twice(rs, first_ids))
            run["replay_metrics"] = await loop.run_in_executor(
                None, get_text, f"http://127.0.0.1:{replay['INTENT_WEB_PORT']}/metrics")
        run["alerts_timed"] = await read_all_timed(kafka_bootstrap, alerts)
        run["replay_log"] = (logs / "worker-2.log").read_text(errors="replace")
    finally:
        redis.stop()
    return run


def _users(records: list[dict]) -> set[str]:
    return {r["user_id"] for r in records}


def _sent_twice(records: list[dict], ids: set[str]) -> bool:
    counts = Counter(r["alert_id"] for r in records)
    return all(counts[i] >= 2 for i in ids)


def _covered_twice(records: list[dict], ids: set[str]) -> bool:
    counts = Counter(eid for r in records for eid in r["event_ids"])
    return all(counts[i] >= 2 for i in ids)


def test_the_worker_keeps_scoring_every_event(restart_run) -> None:
    assert restart_run["alive"], restart_run["log"][-3000:]
    records = [r for _, r in restart_run["scores_timed"]]
    every = {e["event_id"] for e in restart_run["before"] + restart_run["during"]}
    assert covered_ids(records) == every


def test_the_loss_is_counted_once_and_logged_once(restart_run) -> None:
    assert sample(restart_run["scrape_after"], "intent_redis_state_lost_total") == 1
    lines = [ln for ln in restart_run["log"].splitlines() if LOST in ln]
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    assert "windows, alert cooldowns and outcome state start empty" in lines[0]
    # looked at every INTENT_REDIS_STATE_CHECK_S=1 s (slack for a busy machine)
    assert restart_run["noticed_s"] < 5.0, restart_run["noticed_s"]
    twice = sum(1 for n in Counter(eid for _, r in restart_run["scores_timed"]
                                   for eid in r["event_ids"]).values() if n > 1)
    print(f"\nRedis restarted empty: the loss noticed {restart_run['noticed_s']:.2f}s after "
          f"Redis came back, a scrape while it was away took {restart_run['scrape_down_s']:.3f}s, "
          f"{twice} events scored twice")


def test_readiness_is_0_while_redis_is_away_and_the_scrape_still_answers(restart_run) -> None:
    assert sample(restart_run["scrape_down"], "intent_ready") == 0
    assert restart_run["scrape_down_s"] < 3.0
    assert sample(restart_run["scrape_after"], "intent_ready") == 1


def test_windows_after_the_restart_hold_only_events_written_after_it(restart_run) -> None:
    """Nothing from before the restart comes back (not from the worker's window cache either),
    and every event first scored after the restart is in its user's window."""
    stopped, started = restart_run["stopped_ms"], restart_run["started_ms"]
    last_cover: dict[str, int] = {}
    first_cover: dict[str, int] = {}
    for ts, record in restart_run["scores_timed"]:
        for eid in record["event_ids"]:
            last_cover[eid] = max(ts, last_cover.get(eid, ts))
            first_cover[eid] = min(ts, first_cover.get(eid, ts))
    held = [e["event_id"] for w in restart_run["windows"].values() for e in w]
    assert len(held) == len(set(held)), "an event twice in a window"
    before = {e["event_id"] for e in restart_run["before"]}
    assert not before & set(held), sorted(before & set(held))[:5]
    # written before the restart and not again after it: gone with Redis
    stale = [eid for eid in held if last_cover[eid] < stopped]
    assert not stale, stale[:5]
    after = {eid for eid, ts in first_cover.items() if ts >= started}
    assert after, "no event was scored after the restart: the restart was not mid-stream"
    assert after <= set(held), sorted(after - set(held))[:5]
    assert len(set(held)) < len(restart_run["during"])  # some of the stream went with Redis


def test_alerts_sent_again_after_the_loss_carry_the_same_id_and_contents(restart_run) -> None:
    """The burst and the bot had no events after the restart, so their cooldowns are gone and
    the replay alerts them again: the same alert_id, the same record. Other alerts from before
    the restart may be held back by cooldowns of alerts after it; any that is sent again is
    the same too."""
    timed = restart_run["alerts_timed"]
    first = [a for ts, a in timed if ts < restart_run["stopped_ms"]]
    again = {a["alert_id"]: alert_contents(a) for ts, a in timed
             if ts >= restart_run["replay_started_ms"]}
    anomalies = [a for a in first if a["user_id"] in ("burst", "bot")]
    assert sorted(a["kind"] for a in anomalies) == ["bot_cadence", "purchase_velocity"]
    for alert in anomalies:
        assert again.get(alert["alert_id"]) == alert_contents(alert), alert
    for alert in first:
        assert again.get(alert["alert_id"], alert_contents(alert)) == alert_contents(alert)


def test_a_worker_started_after_the_loss_does_not_report_it(restart_run) -> None:
    assert sample(restart_run["replay_metrics"], "intent_redis_state_lost_total") == 0
    assert LOST not in restart_run["replay_log"]
