"""The micro-batch pipeline with a memory store and a fake scorer (no Kafka, no Redis)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson
import pytest

from worker.events import validate
from worker.features import EventCache, ModelInput
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore
from worker.windows.codec import DecodedEvents, encode_event


class RecordingScorer:
    name = "fake"
    version = "1.2.3"
    max_chars = 500

    def __init__(self) -> None:
        self.calls: list[list[ModelInput]] = []
        self.threads: list[str] = []

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        self.calls.append(list(inputs))
        self.threads.append(threading.current_thread().name)
        return [min(1.0, 0.1 * len(i.text) / 50) for i in inputs]


def ev(eid: str, user: str, ts: int, etype: str = "view", **extra) -> bytes:
    doc = {"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
           "product": {"id": "p1", "title": "Phone", "price": 100.0}} | extra
    return orjson.dumps(doc)


def msgs(values: list[bytes | None], ts0: int = 1_700_000_000_000) -> list[Message]:
    return [Message(key=b"k", value=v, topic="clickstream", partition=0, offset=i,
                    timestamp_ms=ts0 + i)
            for i, v in enumerate(values)]


@pytest.fixture
def pipeline():
    settings = load_settings(window_max_events=5, window_seconds=3600)
    store = MemoryWindowStore.from_settings(settings)
    scorer = RecordingScorer()
    return Pipeline(settings, store=store, scorer=scorer), scorer


async def test_one_forward_pass_per_user_per_batch(pipeline):
    pipe, scorer = pipeline
    t = 1_700_000_000_000
    result = await pipe.process(msgs([ev("a1", "u1", t), ev("b1", "u2", t + 1),
                                      ev("a2", "u1", t + 2), ev("a3", "u1", t + 3)]))
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 2  # two users, one call
    records = {orjson.loads(o.value)["user_id"]: orjson.loads(o.value) for o in result.scores}
    assert records["u1"]["event_ids"] == ["a1", "a2", "a3"]
    assert records["u1"]["event_id"] == "a3"
    assert records["u2"]["event_ids"] == ["b1"]
    for r in records.values():
        validate("intent-score.v1", r)
        assert r["model"] == {"name": "fake", "version": "1.2.3"}


async def test_newest_event_by_event_time_names_the_record(pipeline):
    pipe, _ = pipeline
    t = 1_700_000_000_000
    result = await pipe.process(msgs([ev("late", "u1", t + 10_000), ev("early", "u1", t)]))
    (record,) = [orjson.loads(o.value) for o in result.scores]
    assert record["event_id"] == "late"
    assert record["event_ids"] == ["late", "early"]
    assert record["window"] == {"events": 2, "span_s": 10.0}


async def test_bad_messages_become_dead_letters_and_the_rest_is_scored(pipeline):
    pipe, _ = pipeline
    t = 1_700_000_000_000
    result = await pipe.process(msgs([b"{oops", ev("a1", "u1", t), None,
                                      ev("x", "u1", t, etype="fly")]))
    reasons = [orjson.loads(o.value)["reason"] for o in result.dead_letters]
    assert reasons == ["invalid_json", "empty", "unknown_event_type"]
    offsets = [orjson.loads(o.value)["offset"] for o in result.dead_letters]
    assert offsets == [0, 2, 3]
    assert [orjson.loads(o.value)["event_ids"] for o in result.scores] == [["a1"]]


async def test_duplicates_in_one_batch_count_once(pipeline):
    pipe, _ = pipeline
    t = 1_700_000_000_000
    result = await pipe.process(msgs([ev("a1", "u1", t), ev("a1", "u1", t)]))
    (record,) = [orjson.loads(o.value) for o in result.scores]
    assert record["event_ids"] == ["a1"] and record["window"]["events"] == 1


async def test_model_runs_off_the_event_loop(pipeline):
    pipe, scorer = pipeline
    await pipe.process(msgs([ev("a1", "u1", 1_700_000_000_000)]))
    assert scorer.threads and scorer.threads[0] != threading.main_thread().name


async def test_a_scorer_that_loses_outputs_is_an_error(pipeline):
    pipe, _ = pipeline

    class Broken(RecordingScorer):
        def score(self, inputs):
            return []

    pipe.scorer = Broken()
    with pytest.raises(RuntimeError, match="0 scores for 1 inputs"):
        await pipe.process(msgs([ev("a1", "u1", 1_700_000_000_000)]))


async def test_swapping_the_scorer_takes_effect_at_the_next_batch(pipeline):
    pipe, _ = pipeline

    class V2(RecordingScorer):
        version = "2.0.0"

    pipe.scorer = V2()
    result = await pipe.process(msgs([ev("a1", "u1", 1_700_000_000_000)]))
    assert orjson.loads(result.scores[0].value)["model"]["version"] == "2.0.0"


async def test_latency_runs_from_the_kafka_timestamp(pipeline):
    pipe, _ = pipeline
    import time

    now = time.time_ns() // 1_000_000
    m = [Message(key=None, value=ev("a1", "u1", 1_700_000_000_000), topic="t", partition=0,
                 offset=0, timestamp_ms=now - 1500)]
    result = await pipe.process(m)
    latency = orjson.loads(result.scores[0].value)["latency_ms"]
    assert 1500 <= latency < 10_000


async def test_an_unexpected_error_on_one_message_dead_letters_only_that_one(pipeline, monkeypatch):
    import worker.scoring.pipeline as module

    real = module.parse_event

    def parse(raw, *, max_bytes):
        if raw and b"boom" in raw:
            raise RuntimeError("a bug")
        return real(raw, max_bytes=max_bytes)

    monkeypatch.setattr(module, "parse_event", parse)
    pipe, _ = pipeline
    t = 1_700_000_000_000
    result = await pipe.process(msgs([ev("a1", "u1", t), b'{"boom": 1}', ev("b1", "u2", t)]))
    assert sorted(orjson.loads(o.value)["user_id"] for o in result.scores) == ["u1", "u2"]
    assert result.dead_letter_reasons == ["internal_error"]
    letter = orjson.loads(result.dead_letters[0].value)
    validate("dead-letter.v1", letter)
    assert letter["detail"] == "RuntimeError: a bug" and letter["offset"] == 1


class SharedEventsStore(MemoryWindowStore):
    """The memory store, its windows decoded through a DecodedEvents cache as the Redis store
    does: the same event dicts come back batch after batch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.decoded = DecodedEvents(1000)

    def append_sync(self, batch):
        windows = super().append_sync(batch)
        return {u: self.decoded.window([encode_event(e, u)[2] for e in w], u)
                for u, w in windows.items()}


async def test_the_event_cache_gives_the_inputs_built_without_it():
    settings = load_settings(window_max_events=6, window_seconds=3600)
    cached = EventCache(100)
    runs = []
    for cache in (cached, EventCache(0)):
        store = SharedEventsStore(max_events=6, span_ms=3_600_000)
        scorer = RecordingScorer()
        pipe = Pipeline(settings, store=store, scorer=scorer, event_cache=cache)
        t = 1_700_000_000_000
        for b in range(8):
            await pipe.process(msgs([ev(f"e{b}-{i}", f"u{i % 3}", t + 70_000 * (b * 4 + i),
                                        etype=("view", "add_to_cart", "purchase")[(b + i) % 3])
                                     for i in range(4)]))
        runs.append([(i.text, i.features) for call in scorer.calls for i in call])
    assert runs[0] == runs[1]
    assert cached.hits > 0
