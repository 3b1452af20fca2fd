"""Outcomes end to end: a labelled REES46 slice through the worker with a shadow model.

Every score record whose horizon the watermark passed gets exactly one outcome with training's
label; a redelivery of every batch adds none; the live metrics agree with the outcomes; and
``evaluate --outcomes`` reproduces ``evaluate`` on the same events.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.helpers import read_all, read_topic, worker_env, worker_process
from tests.e2e.test_model_swap import tiny_model_dir
from worker.dataset import load_events
from worker.dataset.examples import DEFAULT_HORIZON_S, bought_within
from worker.events import validate

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rees46" / "events-dev.csv"
PARTITIONS = 4
H_MS = DEFAULT_HORIZON_S * 1000


def rees46_slice() -> list[dict]:
    """20 minutes of a busy hour of the dev slice, one user in six (1,384 events, 22 purchases
    of 359 users)."""
    events = load_events(DATA, "rees46").events
    start = events[0]["ts"] + 140 * 60_000
    return [e for e in events if start <= e["ts"] < start + 20 * 60_000
            and zlib.crc32(e["user_id"].encode()) % 6 == 0]


async def produce_stream(bootstrap: str, topic: str, events: list[dict],
                         sentinels: list[dict]) -> None:
    """Events keyed by user, in event-time order; then one late event on every partition, so
    each partition's watermark passes the horizon of every earlier score."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futs = [await producer.send(topic, value=orjson.dumps(e), key=e["user_id"].encode())
                for e in events]
        for p, s in enumerate(sentinels):
            futs.append(await producer.send(topic, value=orjson.dumps(s),
                                            key=s["user_id"].encode(), partition=p))
        for f in futs:
            await f
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def outcomes_run(kafka_bootstrap, redis_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("outcomes")
    shadow = tiny_model_dir(root, "9.0.0", seed=3)
    env = worker_env(kafka_bootstrap, redis_url, INTENT_SHADOW_MODEL_PATH=str(shadow),
                     INTENT_OUTCOME_LATENESS_S="0", INTENT_TOPIC_PARTITIONS=str(PARTITIONS),
                     INTENT_TOPIC_OUTCOMES=f"outcomes-{root.name}", INTENT_BATCH_MAX="128",
                     INTENT_ANOMALY_ENABLED="off")
    events = rees46_slice()
    last = max(e["ts"] for e in events)
    sentinels = [{"event_id": f"sentinel-{p}", "user_id": f"sentinel-{p}", "event_type": "view",
                  "ts": last + H_MS + 60_000} for p in range(PARTITIONS)]
    valid = {e["event_id"] for e in events} | {s["event_id"] for s in sentinels}
    await produce_stream(kafka_bootstrap, env["INTENT_TOPIC_EVENTS"], events, sentinels)

    def covered(records):
        return {i for r in records for i in r["event_ids"]} >= valid

    logs = root / "worker.log"
    with worker_process(env, logs):
        scores = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"], until=covered,
                                  timeout_s=300)
        expected = expected_outcomes(scores, events, sentinels[0]["ts"])
        outcomes = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_OUTCOMES"],
                                    until=lambda r: len({o["score_id"] for o in r})
                                    >= len(expected), timeout_s=120)
        n_outcomes = len({o["score_id"] for o in outcomes})
        metrics = await live_metrics(env, n_outcomes)
    # every batch again, as after a lost commit: a new consumer group starts at the first
    # offset, on the same Redis state
    n_scores = len(scores)
    # offset, on the same Redis state; its outcomes go to a topic of their own, so the first
    # topic stays the first run's (which evaluate --outcomes reads)
    again_env = {**env, "INTENT_APP_ID": env["INTENT_APP_ID"] + "-again",
                 "INTENT_TOPIC_OUTCOMES": env["INTENT_TOPIC_OUTCOMES"] + "-again"}
    with worker_process(again_env, root / "worker-again.log"):
        again = await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"],
                                 until=lambda r: covered(r[n_scores:]), timeout_s=300)
        await asyncio.sleep(2.0)  # the last batch's outcomes, delivered with its scores
        outcomes_after = outcomes + await read_all(kafka_bootstrap,
                                                   again_env["INTENT_TOPIC_OUTCOMES"])
    return {"env": env, "events": events, "sentinels": sentinels, "scores": scores,
            "expected": expected,
            "outcomes": outcomes, "again": again, "outcomes_after": outcomes_after,
            "metrics": metrics, "shadow": shadow, "log": logs.read_text(errors="replace")}


def expected_outcomes(scores: list[dict], events: list[dict], sentinel_ts: int) -> dict[str, int]:
    """score_id -> training's label, for every score of an example window whose horizon ends
    before the watermark."""
    by_id = {e["event_id"]: e for e in events}
    purchases: dict[str, list[int]] = {}
    for e in sorted(events, key=lambda e: e["ts"]):
        if e["event_type"] == "purchase":
            purchases.setdefault(e["user_id"], []).append(e["ts"])
    out = {}
    for r in scores:
        e = by_id.get(r["event_id"])
        if e is None or e["event_type"] == "purchase" or e["ts"] + H_MS >= sentinel_ts:
            continue
        out[r["score_id"]] = bought_within(purchases.get(e["user_id"], []), e["ts"], H_MS)
    return out


def metrics_text(env: dict) -> str:
    import urllib.request

    url = f"http://127.0.0.1:{env['INTENT_WEB_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.read().decode()


def gauges(text: str, name: str) -> dict[tuple[str, str, str], float]:
    """``name``'s samples by (model, version, role)."""
    out = {}
    for m in re.finditer(name + r'\{([^}]*)\} (\S+)', text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[(labels["model"], labels["version"], labels["role"])] = float(m.group(2))
    return out


async def live_metrics(env: dict, n: int) -> str:
    """/metrics once the live window holds all ``n`` outcomes (the page refreshes it, at most
    every few seconds)."""
    text = ""
    for _ in range(60):
        text = await asyncio.to_thread(metrics_text, env)
        if n in gauges(text, "intent_live_outcomes").values():
            return text
        await asyncio.sleep(0.5)
    return text


async def test_every_due_score_has_exactly_one_outcome_with_trainings_label(outcomes_run):
    expected, outcomes = outcomes_run["expected"], outcomes_run["outcomes"]
    counts = Counter(o["score_id"] for o in outcomes)
    assert len(expected) > 300 and sum(expected.values()) >= 10
    assert set(counts) == set(expected), outcomes_run["log"][-3000:]
    assert max(counts.values()) == 1
    assert {o["score_id"]: o["label"] for o in outcomes} == expected
    for o in outcomes:
        validate("intent-outcome.v1", o)
        assert o["model"]["name"] == "intent-minilm" and o["shadow"]["version"] == "9.0.0"
        assert o["resolved_by"] == ("purchase" if o["label"] else "watermark")


async def test_the_outcome_carries_the_published_score(outcomes_run):
    published = {r["score_id"]: r for r in outcomes_run["scores"]}
    for o in outcomes_run["outcomes"]:
        r = published[o["score_id"]]
        assert (o["score"], o["event_id"], o["event_ts"], o["user_id"]) == (
            r["score"], r["event_id"], r["event_ts"], r["user_id"])


async def test_a_redelivery_of_every_batch_adds_no_second_outcome(outcomes_run):
    """The redelivered batches score the same events again; where a batch is cut as before, the
    score id is the same and its outcome is not sent again (a batch cut differently is another
    score, with its own id and outcome)."""
    expected = outcomes_run["expected"]
    again = outcomes_run["again"][len(outcomes_run["scores"]):]
    same = {r["score_id"] for r in again} & set(expected)
    assert len(same) > len(expected) // 4, (len(same), len(expected))
    counts = Counter(o["score_id"] for o in outcomes_run["outcomes_after"])
    assert max(counts.values()) == 1 and set(expected) <= set(counts)


def by_role(outcomes: list[dict], role: str) -> tuple[list[int], list[float]]:
    if role == "champion":
        return [o["label"] for o in outcomes], [o["score"] for o in outcomes]
    return [o["label"] for o in outcomes], [o["shadow"]["score"] for o in outcomes]


async def test_the_live_metrics_agree_with_the_outcomes(outcomes_run):
    from worker.dataset.metrics import compute_metrics

    text, outcomes = outcomes_run["metrics"], outcomes_run["outcomes"]
    for role, key in (("champion", ("intent-minilm", "2.0.0", "champion")),
                      ("shadow", ("tiny", "9.0.0", "shadow"))):
        y, s = by_role(outcomes, role)
        offline = compute_metrics(y, s)
        assert gauges(text, "intent_live_outcomes")[key] == len(outcomes)
        assert gauges(text, "intent_live_positives")[key] == sum(y)
        for metric in ("pr_auc", "roc_auc", "brier", "ece"):
            assert gauges(text, f"intent_live_{metric}")[key] == pytest.approx(
                offline[metric], abs=1e-9), (role, metric)
    # drift against the shipped model's training-time scores: present for the champion (its
    # directory has a reference), absent for the shadow (the tiny model has none)
    psi = gauges(text, "intent_score_psi")
    assert 0 <= psi[("intent-minilm", "2.0.0", "champion")] < 10
    assert ("tiny", "9.0.0", "shadow") not in psi
    labels = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'intent_outcomes_total\{label="(\d)"\} (\S+)', text)}
    assert labels == {"0": len(outcomes) - sum(y), "1": sum(y)}


def test_evaluate_outcomes_reproduces_evaluate_on_the_same_events(outcomes_run, tmp_path,
                                                                   monkeypatch):
    """The champion's figures from the outcomes topic equal evaluate's on the same events:
    the same examples (windows, labels), the same model, the same metric function."""
    from click.testing import CliRunner

    from worker.cli import main
    from worker.dataset import build_examples, compute_metrics
    from worker.features import build_input
    from worker.model import default_model_path, load_model

    env = outcomes_run["env"]
    monkeypatch.setenv("INTENT_KAFKA_BOOTSTRAP", env["INTENT_KAFKA_BOOTSTRAP"])
    result = CliRunner().invoke(main, ["evaluate", "--outcomes", "--topic",
                                       env["INTENT_TOPIC_OUTCOMES"], "--report",
                                       str(tmp_path / "outcomes")])
    assert result.exit_code == 0, result.output
    online = json.loads((tmp_path / "outcomes" / "metrics.json").read_text())["models"]
    champion = online["champion intent-minilm 2.0.0"]

    model = load_model(default_model_path(), device="cpu")
    window = model.config.window
    outcomes = {o["event_id"]: o for o in outcomes_run["outcomes"]}
    seen = outcomes_run["events"] + outcomes_run["sentinels"]  # everything the worker read
    examples = [e for e in build_examples(seen,
                                          horizon_s=model.config.label.horizon_s,
                                          max_events=window.max_events,
                                          window_seconds=window.seconds)
                if e.event_id in outcomes]
    assert len(examples) == len(outcomes)
    assert {e.event_id: e.label for e in examples} == {i: o["label"] for i, o in outcomes.items()}
    scores = model.score([build_input(e.window, max_chars=model.max_chars,
                                      phrase_price=model.phrase_price) for e in examples])
    assert scores == pytest.approx([outcomes[e.event_id]["score"] for e in examples], abs=1e-6)
    labels = [e.label for e in examples]
    published = [outcomes[e.event_id]["score"] for e in examples]
    # the report's figures are exactly evaluate's function on these examples and scores
    same = compute_metrics(labels, published)
    assert champion["counts"] == same["counts"]
    for metric in ("pr_auc", "roc_auc", "brier", "ece", "best_f1"):
        assert champion[metric] == pytest.approx(same[metric], abs=1e-12), metric
    # rescored here, the scores agree to 1e-6 (a phrase's vector depends slightly on the
    # encoder batch it came in); windows tied within that may swap places, so the ranking
    # figures agree to the third decimal, Brier to the sixth
    offline = compute_metrics(labels, scores)
    assert champion["brier"] == pytest.approx(offline["brier"], abs=1e-6)
    for metric in ("pr_auc", "roc_auc"):
        assert champion[metric] == pytest.approx(offline[metric], abs=1e-3), metric
    assert champion["counts"]["n"] == len(examples)

