"""Alerts from the micro-batch pipeline: memory store, fake scorer (no Kafka, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from worker.events import validate
from worker.features import ModelInput
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000


class FixedScorer:
    name = "fake"
    version = "9.9.9"
    max_chars = 500

    def __init__(self, value: float) -> None:
        self.value = value
        self.sizes: list[int] = []

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        self.sizes.append(len(inputs))
        return [self.value] * len(inputs)


def event(eid: str, user: str, ts: int, etype: str = "view", *, pid: str = "p1",
          price: float = 100.0, category: str = "electronics.phone") -> dict:
    return {"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
            "product": {"id": pid, "title": "Phone", "category": category, "price": price}}


def msgs(events: list[dict]) -> list[Message]:
    return [Message(key=e["user_id"].encode(), value=orjson.dumps(e), topic="clickstream",
                    partition=0, offset=i, timestamp_ms=T0 + i) for i, e in enumerate(events)]


def make(score: float = 0.5, **overrides) -> tuple[Pipeline, FixedScorer, MemoryWindowStore]:
    settings = load_settings(**overrides)
    store = MemoryWindowStore.from_settings(settings)
    scorer = FixedScorer(score)
    return Pipeline.from_settings(settings, store=store, scorer=scorer), scorer, store


def burst(user: str = "u1", n: int = 8) -> list[dict]:
    warmup = [event(f"{user}-v{i}", user, T0 + i * 1000) for i in range(3)]
    return warmup + [event(f"{user}-b{i}", user, T0 + 10_000 + i * 20_000, "purchase")
                     for i in range(n)]


async def test_a_purchase_burst_is_one_alert_with_evidence() -> None:
    pipe, _, _ = make()
    result = await pipe.process(msgs(burst()))
    records = [orjson.loads(o.value) for o in result.alerts]
    assert [r["kind"] for r in records] == ["purchase_velocity"]
    record = records[0]
    validate("anomaly-alert.v1", record)
    assert record["user_id"] == "u1" and result.alerts[0].key == b"u1"
    # fires at the 5th purchase (the default threshold), listing the five
    assert record["evidence"]["event_ids"] == [f"u1-b{i}" for i in range(5)]
    assert result.cooldown_updates == {
        "u1": {"purchase_velocity": [(record_ts(record), record["alert_id"])]}}


def record_ts(record: dict) -> int:
    from datetime import datetime

    from worker.events.parse import epoch_ms

    return epoch_ms(datetime.fromisoformat(record["event_ts"]))


async def test_a_confirmed_batch_redelivered_gives_no_second_alert() -> None:
    pipe, _, _ = make()
    first = await pipe.process(msgs(burst()))
    await pipe.confirm(first)
    again = await pipe.process(msgs(burst()))
    assert len(first.alerts) == 1 and again.alerts == []


async def test_an_unconfirmed_alert_is_sent_again_with_the_same_id() -> None:
    pipe, _, _ = make()
    first = await pipe.process(msgs(burst()))
    again = await pipe.process(msgs(burst()))  # no confirm: the alert may never have left
    assert len(again.alerts) == 1
    assert (orjson.loads(again.alerts[0].value)["alert_id"]
            == orjson.loads(first.alerts[0].value)["alert_id"])


async def test_the_burst_continuing_in_later_batches_stays_quiet() -> None:
    pipe, _, _ = make()
    first = await pipe.process(msgs(burst(n=5)))
    await pipe.confirm(first)
    more = [event(f"u1-c{i}", "u1", T0 + 200_000 + i * 1000, "purchase") for i in range(5)]
    later = await pipe.process(msgs(more))
    assert len(first.alerts) == 1 and later.alerts == []


async def test_out_of_character_scores_the_prior_window_in_the_same_model_call() -> None:
    pipe, scorer, _ = make(score=0.01)  # below the default 0.08: out of character
    events = [event("v1", "u1", T0, pid="p1"), event("v2", "u1", T0 + 60_000, pid="p1"),
              event("x1", "u1", T0 + 120_000, "purchase", pid="p-never-seen")]
    result = await pipe.process(msgs(events))
    assert scorer.sizes == [2]  # the user's window + the window before the purchase
    assert result.sequences == 2
    records = [orjson.loads(o.value) for o in result.alerts]
    assert [r["kind"] for r in records] == ["out_of_character_purchase"]
    assert records[0]["model"] == {"name": "fake", "version": "9.9.9"}
    assert records[0]["evidence"]["prior_score"] == pytest.approx(0.01)


async def test_a_high_prior_score_is_in_character() -> None:
    pipe, _, _ = make(score=0.5)
    events = [event("v1", "u1", T0, pid="p1"),
              event("x1", "u1", T0 + 120_000, "purchase", pid="p-never-seen")]
    assert (await pipe.process(msgs(events))).alerts == []


async def test_price_outlier_uses_the_categories_prices_before_the_batch() -> None:
    pipe, _, store = make()
    normal = [event(f"n{i}", f"viewer{i}", T0 + i, price=100.0 + i) for i in range(30)]
    await pipe.process(msgs(normal))
    odd = [event("v", "u9", T0 + 1000, pid="p1"),
           event("big", "u9", T0 + 2000, "purchase", pid="p1", price=100_000.0)]
    result = await pipe.process(msgs(odd))
    kinds = [orjson.loads(o.value)["kind"] for o in result.alerts]
    assert kinds == ["price_outlier"]
    assert orjson.loads(result.alerts[0].value)["evidence"]["samples"] == 30


async def test_detectors_off() -> None:
    pipe, scorer, _ = make(anomaly_enabled=False)
    result = await pipe.process(msgs(burst()))
    assert result.alerts == [] and result.cooldown_updates == {} and scorer.sizes == [1]
