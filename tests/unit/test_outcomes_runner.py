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
