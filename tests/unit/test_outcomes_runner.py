"""Outcomes through the batch runner, with and without the two-stage overlap: the next batch is
prepared while this one finishes, so its outcome state is read before this one's is written."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.test_batch_runner import Harness
from tests.unit.test_outcomes_tracker import MIN, T0, FixedScorer, H
from worker.errors import StoreError
from worker.outcomes.state import MemoryOutcomeState
from worker.outcomes.tracker import OutcomeTracker
from worker.scoring.pipeline import Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore


def ev(eid: str, user: str, ts: int, etype: str = "view") -> str:
    return orjson.dumps({"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
                         "product": {"id": "p1", "title": "Phone", "price": 100.0}}).decode()


class FlakyState(MemoryOutcomeState):
    """Fails the first ``writes`` writes, as a Redis that went away for a moment."""

    def __init__(self, writes: int) -> None:
        super().__init__()
        self.failures = writes

    async def write(self, writes):
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("redis is down")
        return await super().write(writes)


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("failed_writes", [0, 2])
async def test_every_due_score_gets_one_outcome_with_its_label(overlap, failed_writes):
    settings = load_settings(anomaly_enabled=False)
    tracker = OutcomeTracker(FlakyState(failed_writes), lateness_ms=0, max_pending=100,
                             sweep_users=1000)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=FixedScorer(), outcomes=tracker)
    h = Harness(pipeline=pipe)
    await h.run([ev("a", "u1", T0), ev("x", "u2", T0)],
                [ev("b", "u1", T0 + MIN)],
                [ev("p", "u1", T0 + 2 * MIN, "purchase")],  # both of u1's views: bought
                [ev("c", "u1", T0 + 3 * MIN)],
                [ev("z", "u9", T0 + H + 3 * MIN + 1)],  # past every horizon above
                overlap=overlap)
    assert not h.exit_codes and len(h.acked) == 5
    got = [orjson.loads(v) for v in h.producer.sent.get("intent-outcomes", [])]
    assert sorted((o["event_id"], o["label"]) for o in got) == [
        ("a", 1), ("b", 1), ("c", 0), ("x", 0)]
    assert len(h.retries) == failed_writes


class FlakyReads(MemoryOutcomeState):
    """Fails the first ``reads`` reads."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.failures = reads

    async def read(self, users, due, fields=None):
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("redis is down")
        return await super().read(users, due, fields)


async def test_a_failed_state_read_retries_the_batch_without_a_second_record():
    settings = load_settings(anomaly_enabled=False)
    tracker = OutcomeTracker(FlakyReads(2), lateness_ms=0, max_pending=100, sweep_users=1000)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=FixedScorer(), outcomes=tracker)
    h = Harness(pipeline=pipe)
    await h.run([ev("a", "u1", T0), ev("x", "u2", T0)],
                [ev("p", "u1", T0 + MIN, "purchase")])
    scores = [orjson.loads(v)["event_id"] for v in h.producer.sent["scores"]]
    assert sorted(scores) == ["a", "p", "x"] and len(h.retries) == 2
    got = [orjson.loads(v) for v in h.producer.sent["intent-outcomes"]]
    assert [(o["event_id"], o["label"]) for o in got] == [("a", 1)]


class OneAtATime(FixedScorer):
    """Fails on more than one input: every batch of several users is processed message by
    message (BatchRunner.isolate)."""

    def score(self, inputs):
        if len(inputs) > 1:
            raise ValueError("one at a time")
        return super().score(inputs)


async def test_a_batch_processed_message_by_message_resolves_each_score_once():
    """More parts than any fixed bound on resolutions awaiting delivery: every part's outcomes
    stay visible to the later parts until the whole batch is written."""
    settings = load_settings(anomaly_enabled=False, batch_max=300)
    tracker = OutcomeTracker(MemoryOutcomeState(), lateness_ms=0, max_pending=100,
                             sweep_users=1000, batch_max=settings.batch_max)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=FixedScorer(), outcomes=tracker)
    h = Harness(pipeline=pipe)
    await h.run([ev(f"d{i}", f"due{i}", T0) for i in range(5)])
    pipe.scorer = OneAtATime()
    late = T0 + H + 1
    parts = [ev("v", "buyer", late)] + [ev(f"o{i}", f"other{i}", late) for i in range(90)]
    parts.append(ev("p", "buyer", late + MIN, "purchase"))
    await h.run(parts)
    got = [orjson.loads(v) for v in h.producer.sent["intent-outcomes"]]
    assert sorted((o["event_id"], o["label"]) for o in got) == [
        *((f"d{i}", 0) for i in range(5)), ("v", 1)]
