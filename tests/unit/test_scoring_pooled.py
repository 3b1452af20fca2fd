"""The pipeline with the pooled model (fake encoder, memory stores): inputs carry event
sequences, the out-of-character prior window is scored by the pooled model in the same batch,
and the scorer swaps between the text and the pooled kinds between batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from tests.support.fake_encoder import FakeEncoder
from worker.features import FEATURE_NAMES, ModelInput
from worker.model import ModelConfig
from worker.model.config import WindowModelSection
from worker.model.event_model import EventVectorModel
from worker.model.pooled import PooledHead
from worker.model.vectors import EventVectors
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.vectors import MemoryVectorStore
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000
DIM = 8


class RecordingEncoder(FakeEncoder):
    def __init__(self) -> None:
        super().__init__("fake-enc", dim=DIM)
        self.thread_names: list[str] = []

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        self.thread_names.append(threading.current_thread().name)
        return super().encode(phrases)


class TextScorer:
    name, version, max_chars = "text", "1", 500

    def __init__(self) -> None:
        self.calls: list[list[ModelInput]] = []

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        self.calls.append(list(inputs))
        return [0.5] * len(inputs)


def pooled_model(encoder: FakeEncoder, bias: float = 0.0) -> EventVectorModel:
    config = ModelConfig(name="pooled", version="2", text_dim=DIM, created="2026-01-01T00:00:00Z",
                         window_model=WindowModelSection(kind="pooled"))
    head = PooledHead(np.zeros(len(FEATURE_NAMES)), np.zeros(DIM), np.zeros(DIM), 0.0, bias)
    return EventVectorModel(config=config, head=head,
                            vectors=EventVectors(encoder, store=MemoryVectorStore()))


def event(eid: str, user: str, ts: int, etype: str = "view", pid: str = "p1") -> dict:
    return {"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
            "product": {"id": pid, "title": "Phone", "category": "electronics.phone",
                        "price": 100.0}}


def msgs(events: list[dict]) -> list[Message]:
    return [Message(key=e["user_id"].encode(), value=orjson.dumps(e), topic="clickstream",
                    partition=0, offset=i, timestamp_ms=T0 + i) for i, e in enumerate(events)]


def make(scorer, **overrides) -> Pipeline:
    settings = load_settings(**overrides)
    return Pipeline.from_settings(settings, store=MemoryWindowStore.from_settings(settings),
                                  scorer=scorer)


async def test_the_prior_window_is_scored_by_the_pooled_model_in_the_same_batch() -> None:
    encoder = RecordingEncoder()
    model = pooled_model(encoder, bias=-5.0)  # every score ~0.0067: out of character
    pipe = make(model)
    events = [event("v1", "u1", T0), event("v2", "u1", T0 + 60_000),
              event("x1", "u1", T0 + 120_000, "purchase", pid="p-never-seen")]
    result = await pipe.process(msgs(events))
    assert result.sequences == 2
    alerts = [orjson.loads(o.value) for o in result.alerts]
    assert [a["kind"] for a in alerts] == ["out_of_character_purchase"]
    assert alerts[0]["model"] == {"name": "pooled", "version": "2"}
    assert alerts[0]["evidence"]["prior_score"] == pytest.approx(1 / (1 + np.exp(5.0)), abs=1e-6)
    # one encoder call for the batch's distinct phrases (viewed p1, purchased p-never-seen)
    assert len(encoder.calls) == 1 and len(encoder.calls[0]) == 2


async def test_the_scorer_swaps_between_kinds_between_batches() -> None:
    text, pooled = TextScorer(), pooled_model(RecordingEncoder())
    pipe = make(text, anomaly_enabled=False)
    await pipe.process(msgs([event("a1", "u1", T0)]))
    assert text.calls[-1][0].text and text.calls[-1][0].events is None
    pipe.scorer = pooled
    result = await pipe.process(msgs([event("a2", "u1", T0 + 1000)]))
    record = orjson.loads(result.scores[0].value)
    assert record["model"] == {"name": "pooled", "version": "2"}
    assert record["score"] == pytest.approx(0.5)  # zero head: logit 0
    assert pooled.vectors.encoded == 1  # a1 and a2 share one phrase
    pipe.scorer = text
    await pipe.process(msgs([event("a3", "u1", T0 + 2000)]))
    last = text.calls[-1][0]
    assert last.text.count("viewed") == 3 and last.events is None
