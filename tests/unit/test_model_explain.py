"""Explanations of the pooled window model: exact, and faithful to what deleting an event does."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tests.support.fake_encoder import FakeEncoder
from worker.events import validate
from worker.features import FEATURE_NAMES, ModelInput, build_input
from worker.features.sequence import EventSequence
from worker.model import ModelConfig
from worker.model.config import WindowModelSection
from worker.model.event_model import EventVectorModel
from worker.model.explain import leave_one_out_logits
from worker.model.pooled import PooledHead, layer_norm, pool
from worker.model.vectors import EventVectors
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.vectors import MemoryVectorStore
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000
DIM = 8
TYPES = ("view", "view", "view", "add_to_cart", "remove_from_cart", "search", "purchase")


def random_head(rng: np.random.Generator) -> PooledHead:
    return PooledHead(rng.normal(scale=0.3, size=len(FEATURE_NAMES)), rng.normal(size=DIM),
                      rng.normal(size=DIM), float(rng.normal()), float(rng.normal()))


def model(head: PooledHead, half_life_s: float = 300.0) -> EventVectorModel:
    config = ModelConfig(name="pooled", version="2", text_dim=DIM, created="2026-01-01T00:00:00Z",
                         window_model=WindowModelSection(kind="pooled", half_life_s=half_life_s))
    return EventVectorModel(config=config, head=head,
                            vectors=EventVectors(FakeEncoder("fake", dim=DIM),
                                                 store=MemoryVectorStore()))


def random_window(rng: np.random.Generator, user: str, size: int) -> list[dict]:
    ts = T0
    out = []
    for k in range(size):
        ts += int(rng.integers(1, 600_000))
        etype = str(rng.choice(TYPES))
        event = {"event_id": f"{user}-{k}", "user_id": user, "event_type": etype, "ts": ts}
        if etype == "search":
            event["query"] = str(rng.choice(["phone", "case", "tv"]))
        else:
            pid = int(rng.integers(0, 6))
            event["product"] = {"id": f"p{pid}", "title": f"Thing {pid}",
                                "category": f"cat.{pid % 3}", "price": float(10 + 20 * pid)}
        out.append(event)
    return out


def test_leaving_out_each_event_equals_pooling_the_shortened_window() -> None:
    rng = np.random.default_rng(1)
    head = random_head(rng)
    vectors = layer_norm(rng.normal(size=(12, DIM)))
    rows, ages = [], []
    for size in [1, 2, 3, 4, 7, 12, 5, 3]:
        rows.append(rng.integers(0, 12, size=size).tolist())  # rows repeat: one phrase, 2 events
        ages.append(sorted([0.0, *rng.uniform(0, 3600, size=size - 1).tolist()]))
    rows.append([3, 4, 5])
    ages.append([0.0, 1e6, 2e6])  # the newest holds all the weight: the fragile path
    features = rng.normal(size=(len(rows), len(FEATURE_NAMES)))
    got = leave_one_out_logits(head, rows, ages, vectors, 300.0, features)
    expected = []
    for i, (r, a) in enumerate(zip(rows, ages, strict=True)):
        for j in range(len(r)):
            rr, aa = r[:j] + r[j + 1:], a[:j] + a[j + 1:]
            if not rr:
                expected.append(features[i] @ head.feature_weight + head.bias)
                continue
            stats = pool([rr], [[x - aa[0] for x in aa]], vectors, 300.0)
            expected.append(head.logits(stats, features[i:i + 1])[0])
    # pool() sums float32 vectors; the closed form works in float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_baseline_and_feature_contributions_sum_to_the_logit() -> None:
    rng = np.random.default_rng(2)
    m = model(random_head(rng))
    windows = [random_window(rng, f"u{i}", int(rng.integers(1, 15))) for i in range(20)]
    inputs = [build_input(w, max_chars=0, phrase_price=m.phrase_price) for w in windows]
    scores, explanations = m.explain(inputs, top=len(FEATURE_NAMES))
    assert scores == pytest.approx(m.score(inputs), abs=1e-12)
    for item, score, e in zip(inputs, scores, explanations, strict=True):
        assert e.baseline_logit == m.head.bias
        assert e.other_features_logit == pytest.approx(0.0, abs=1e-12)
        features = sum(c for _, _, c in e.features)
        assert e.baseline_logit + features + e.events_logit == pytest.approx(e.logit, abs=1e-9)
        assert 1 / (1 + np.exp(-e.logit)) == pytest.approx(score, abs=1e-12)
        for i, value, contribution in e.features:  # exact: value times weight
            assert value == item.features[i]
            assert contribution == value * m.head.feature_weight[i]
    _, short = m.explain(inputs, top=3)
    for e in short:
        assert len(e.features) == 3
        shown = sum(c for _, _, c in e.features)
        assert (e.baseline_logit + shown + e.other_features_logit + e.events_logit
                == pytest.approx(e.logit, abs=1e-9))
        sizes = [abs(c) for _, _, c in e.features]
        assert sizes == sorted(sizes, reverse=True)


def test_an_event_effect_is_the_score_less_the_score_without_it_features_held() -> None:
    rng = np.random.default_rng(5)
    m = model(random_head(rng))
    windows = [random_window(rng, f"u{i}", int(rng.integers(2, 12))) for i in range(10)]
    inputs = [build_input(w, max_chars=0, phrase_price=m.phrase_price) for w in windows]
    scores, explanations = m.explain(inputs, top=50)
    for item, score, e in zip(inputs, scores, explanations, strict=True):
        seq = item.events
        assert seq is not None and sorted(p for p, _ in e.events) == list(range(len(seq.phrases)))
        for pos, effect in e.events:
            phrases = seq.phrases[:pos] + seq.phrases[pos + 1:]
            ages = seq.ages_s[:pos] + seq.ages_s[pos + 1:]
            short = ModelInput(text="", features=item.features,
                               events=EventSequence(phrases, tuple(a - ages[0] for a in ages)))
            assert effect == pytest.approx(score - m.score([short])[0], abs=1e-6)
        sizes = [abs(x) for _, x in e.events]
        assert sizes == sorted(sizes, reverse=True)


def test_deleting_the_top_ranked_event_moves_the_score_more_than_a_random_one() -> None:
    """Deleting means taking the event out of the window and scoring it again from scratch
    (context features recomputed too), which the explanation does not do: it holds them."""
    rng = np.random.default_rng(3)
    top_moves, random_moves = [], []
    for trial in range(4):
        m = model(random_head(rng))
        windows = [random_window(rng, f"u{trial}-{i}", int(rng.integers(3, 20)))
                   for i in range(50)]
        inputs = [build_input(w, max_chars=0, phrase_price=m.phrase_price) for w in windows]
        scores, explanations = m.explain(inputs, top=1)
        for window, score, e in zip(windows, scores, explanations, strict=True):
            n = len(window)
            ranked = n - 1 - e.events[0][0]  # position 0 is the newest, the window's last
            other = int(rng.integers(0, n))
            for index, moves in ((ranked, top_moves), (other, random_moves)):
                short = window[:index] + window[index + 1:]
                again = m.score([build_input(short, max_chars=0, phrase_price=m.phrase_price)])
                moves.append(abs(score - again[0]))
    assert np.mean(top_moves) > 1.5 * np.mean(random_moves)


def msgs(events: list[dict]) -> list[Message]:
    return [Message(key=e["user_id"].encode(), value=orjson.dumps(e), topic="clickstream",
                    partition=0, offset=i, timestamp_ms=T0 + i) for i, e in enumerate(events)]


@pytest.mark.parametrize("explain", [True, False])
async def test_score_records_carry_an_explanation_when_it_is_on(explain: bool) -> None:
    rng = np.random.default_rng(4)
    m = model(random_head(rng))
    settings = load_settings(explain=explain, explain_top=2, anomaly_enabled=False)
    pipe = Pipeline.from_settings(settings, store=MemoryWindowStore.from_settings(settings),
                                  scorer=m)
    events = random_window(rng, "u1", 6) + random_window(rng, "u2", 1)
    result = await pipe.process(msgs(events))
    records = {r["user_id"]: r for r in map(orjson.loads, (o.value for o in result.scores))}
    for record in records.values():
        validate("intent-score.v2", record)
    if not explain:
        assert all("explanation" not in r for r in records.values())
        for record in records.values():
            validate("intent-score.v1", record)
        return
    e = records["u1"]["explanation"]
    assert [f["name"] for f in e["features"]] and len(e["features"]) == 2
    assert len(e["events"]) == 2
    assert {x["event_id"] for x in e["events"]} <= {ev["event_id"] for ev in events[:6]}
    by_id = {ev["event_id"]: ev["event_type"] for ev in events}
    assert all(by_id[x["event_id"]] == x["event_type"] for x in e["events"])
    total = (e["baseline"]["logit"] + sum(f["contribution"] for f in e["features"])
             + e["other_features"] + e["events_total"])
    assert total == pytest.approx(e["logit"], abs=1e-9)
    assert 1 / (1 + np.exp(-e["logit"])) == pytest.approx(records["u1"]["score"], abs=1e-9)
    single = records["u2"]["explanation"]["events"]
    assert [x["event_id"] for x in single] == [events[6]["event_id"]]
