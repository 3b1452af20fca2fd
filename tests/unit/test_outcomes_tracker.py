"""Outcomes through the pipeline with a memory window store and memory outcome state."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from worker.events import validate
from worker.outcomes.pending import Pending, done_marker, pack, unpack
from worker.outcomes.state import MemoryOutcomeState
from worker.outcomes.tracker import OutcomeTracker
from worker.outcomes.watermark import Watermarks
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000
MIN = 60_000
H = 600_000  # the default label horizon (no model config: 600 s)


class FixedScorer:
    name = "champ"
    version = "1"
    max_chars = 500
    phrase_price = None

    def __init__(self, value: float = 0.25) -> None:
        self.value = value

    def score(self, inputs: Sequence) -> list[float]:
        return [self.value] * len(inputs)


class BrokenScorer(FixedScorer):
    name = "broken"

    def score(self, inputs: Sequence) -> list[float]:
        raise RuntimeError("no")


class Live:
    def __init__(self) -> None:
        self.scores: list[tuple] = []
        self.outcomes: list[tuple] = []

    def add_scores(self, model, version, role, scores) -> None:
        self.scores.append((model, version, role, list(scores)))

    def add_outcomes(self, model, version, role, scores, labels) -> None:
        self.outcomes.append((model, version, role, list(scores), list(labels)))


def ev(eid: str, user: str, ts: int, etype: str = "view") -> bytes:
    return orjson.dumps({"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
                         "product": {"id": "p1", "title": "Phone", "price": 100.0}})


def batch(*values: bytes, partition: int = 0) -> list[Message]:
    return [Message(key=b"k", value=v, topic="clickstream", partition=partition, offset=i,
                    timestamp_ms=T0 + i) for i, v in enumerate(values)]


def make(*, lateness_s: int = 0, max_pending: int = 100, shadow=None, live=None):
    settings = load_settings(anomaly_enabled=False)
    state = MemoryOutcomeState()
    tracker = OutcomeTracker(state, lateness_ms=lateness_s * 1000, max_pending=max_pending,
                             sweep_users=1000)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=FixedScorer(), outcomes=tracker, shadow=shadow, live=live)
    return pipe, state


async def run(pipe: Pipeline, messages: list[Message]) -> tuple[list[dict], list[dict]]:
    """One batch as the runner does it: process, deliver, confirm."""
    result = await pipe.process(messages)
    await pipe.confirm_outcomes(result)
    return ([orjson.loads(o.value) for o in result.scores],
            [orjson.loads(o.value) for o in result.outcomes])


async def test_a_purchase_inside_the_horizon_labels_earlier_scores_1():
    pipe, _ = make()
    s1, o1 = await run(pipe, batch(ev("a", "u1", T0), ev("x", "u2", T0)))
    s2, o2 = await run(pipe, batch(ev("b", "u1", T0 + 1 * MIN)))
    s3, o3 = await run(pipe, batch(ev("c", "u1", T0 + 2 * MIN, "purchase")))
    assert o1 == [] and o2 == []
    assert sorted(o["score_id"] for o in o3) == sorted(
        [r["score_id"] for r in s1 if r["user_id"] == "u1"] + [s2[0]["score_id"]])
    for o in o3:
        validate("intent-outcome.v1", o)
        assert o["label"] == 1 and o["resolved_by"] == "purchase" and o["user_id"] == "u1"
        assert o["model"] == {"name": "champ", "version": "1"} and o["score"] == 0.25
        assert o["horizon_s"] == 600 and o["resolved_ts"] == "2023-11-14T22:15:20.000Z"
    assert s3[0]["score_id"] not in {o["score_id"] for o in o3}  # a purchase is no example


async def test_the_watermark_passing_the_horizon_labels_a_score_0_once():
    pipe, _ = make()
    s1, _ = await run(pipe, batch(ev("x", "u2", T0)))
    _, at_horizon = await run(pipe, batch(ev("y", "u3", T0 + H)))
    _, past = await run(pipe, batch(ev("z", "u3", T0 + H + 1)))
    _, later = await run(pipe, batch(ev("w", "u3", T0 + 3 * H)))
    assert at_horizon == []  # a purchase at exactly ts + horizon may still come
    assert [(o["score_id"], o["label"], o["resolved_by"]) for o in past] == [
        (s1[0]["score_id"], 0, "watermark")]
    assert s1[0]["score_id"] not in {o["score_id"] for o in later}


async def test_the_horizon_bounds_are_trainings():
    pipe, _ = make()
    await run(pipe, batch(ev("a", "u1", T0), ev("b", "u2", T0)))
    _, got = await run(pipe, batch(ev("pa", "u1", T0 + H, "purchase"),
                                   ev("pb", "u2", T0 + H + 1, "purchase")))
    assert {(o["user_id"], o["label"]) for o in got} == {("u1", 1), ("u2", 0)}


async def test_lateness_holds_negatives_back():
    pipe, _ = make(lateness_s=60)
    await run(pipe, batch(ev("a", "u1", T0)))
    _, early = await run(pipe, batch(ev("b", "u9", T0 + H + 30_000)))
    _, late_purchase = await run(pipe, batch(ev("p", "u1", T0 + H - 1, "purchase")))
    assert early == [] and [o["label"] for o in late_purchase] == [1]


async def test_a_redelivered_batch_adds_no_second_outcome():
    pipe, _ = make()
    first = batch(ev("a", "u1", T0))
    s1, _ = await run(pipe, first)
    _, o1 = await run(pipe, batch(ev("p", "u1", T0 + MIN, "purchase")))
    s_again, o_again = await run(pipe, first)  # consumed again after a restart
    _, o_later = await run(pipe, batch(ev("q", "u1", T0 + 2 * MIN, "purchase"),
                                       ev("z", "u9", T0 + 3 * H)))
    assert s_again[0]["score_id"] == s1[0]["score_id"]
    assert [o["score_id"] for o in o1] == [s1[0]["score_id"]]
    assert o_again == [] and s1[0]["score_id"] not in {o["score_id"] for o in o_later}


async def test_parts_resolved_before_confirming_see_each_other():
    pipe, _ = make()
    r1 = await pipe.process(batch(ev("a", "u1", T0)))
    r2 = await pipe.process(batch(ev("p", "u1", T0 + MIN, "purchase")))
    r3 = await pipe.process(batch(ev("p2", "u1", T0 + 2 * MIN, "purchase")))
    for r in (r1, r2, r3):
        await pipe.confirm_outcomes(r)
    labels = [orjson.loads(o.value)["label"] for r in (r1, r2, r3) for o in r.outcomes]
    assert labels == [1]


async def test_the_shadow_scores_the_same_windows_into_the_outcomes_only():
    live = Live()
    pipe, _ = make(shadow=FixedScorer(0.75), live=live)
    pipe.shadow.name, pipe.shadow.version = "chall", "2"
    s1, _ = await run(pipe, batch(ev("a", "u1", T0)))
    _, got = await run(pipe, batch(ev("p", "u1", T0 + MIN, "purchase")))
    assert s1[0]["score"] == 0.25 and "shadow" not in s1[0]
    assert got[0]["shadow"] == {"name": "chall", "version": "2", "score": 0.75}
    validate("intent-outcome.v1", got[0])
    assert ("champ", "1", "champion", [0.25], [1]) in live.outcomes
    assert ("chall", "2", "shadow", [0.75], [1]) in live.outcomes
    assert ("chall", "2", "shadow", [0.75]) in live.scores


async def test_a_failing_shadow_leaves_the_champion_alone():
    pipe, _ = make(shadow=BrokenScorer())
    s1, _ = await run(pipe, batch(ev("a", "u1", T0)))
    _, got = await run(pipe, batch(ev("p", "u1", T0 + MIN, "purchase")))
    assert s1[0]["score"] == 0.25 and got[0]["label"] == 1 and "shadow" not in got[0]
    assert pipe.shadow_failures == 1  # the purchase's score waits for nothing: not shadowed


async def test_a_user_holds_at_most_max_pending_scores():
    pipe, state = make(max_pending=3)
    sizes = []
    for i in range(6):
        await run(pipe, batch(ev(f"a{i}", "u1", T0 + i * 1000)))
        sizes.append(len(state.hashes["u1"]))
    assert sizes == [1, 2, 3, 4, 4, 4]  # over the bound: trimmed with the next batch
    await run(pipe, batch(ev("b", "u2", T0 + 10_000)))
    assert len(state.hashes["u1"]) == 3 and pipe.outcomes.dropped == 3
    _, got = await run(pipe, batch(ev("p", "u1", T0 + MIN, "purchase")))
    assert sorted(o["event_id"] for o in got) == ["a3", "a4", "a5"]


async def test_nothing_is_resolved_before_it_is_confirmed_elsewhere():
    """A batch whose outcomes were not delivered leaves the state as it was."""
    pipe, state = make()
    await pipe.process(batch(ev("a", "u1", T0)))
    assert state.hashes == {} and state.due_index == {}


def test_pending_entries_round_trip_and_markers_are_not_entries():
    p = Pending("0" * 32, "t", "e", T0, H, 0.5, ("m", "1"), ("s", "2", 0.25))
    assert unpack(p.score_id, "t", pack(p)) == p
    q = Pending("1" * 32, "t", "e", T0, H, 0.5, ("m", "1"))
    assert unpack(q.score_id, "t", pack(q)) == q
    assert unpack("x", "t", done_marker(T0)) is None and unpack("x", "t", b"[1") is None


def test_watermarks_ignore_events_dated_far_in_the_future():
    marks = Watermarks(lateness_ms=1000)
    marks.advance({("t", 0): [T0]}, now_ms=T0)
    marks.advance({("t", 0): [T0 + 10 * 3_600_000]}, now_ms=T0)  # a mis-dated event
    marks.advance({("t", 0): [T0 - 5]}, now_ms=T0)
    assert marks.get("t", 0) == T0 and marks.cutoff("t", 0) == T0 - 1000
    assert marks.cutoff("t", 1) is None


@pytest.mark.parametrize("lateness", [-1])
def test_negative_lateness_is_refused(lateness):
    with pytest.raises(ValueError):
        Watermarks(lateness_ms=lateness)


async def test_a_score_already_past_the_watermark_is_resolved_at_once():
    """The batch that moves the watermark past a new score's horizon resolves it itself: no
    later batch may come to sweep it."""
    pipe, state = make()
    _, got = await run(pipe, batch(ev("a", "u1", T0), ev("z", "u9", T0 + H + 1)))
    assert [(o["event_id"], o["label"], o["resolved_by"]) for o in got] == [("a", 0, "watermark")]
    assert "u1" not in state.hashes or all(v.startswith(b"-") for v in state.hashes["u1"].values())


async def test_a_redelivered_score_resolved_at_once_is_not_resolved_again():
    pipe, _ = make()
    first = batch(ev("a", "u1", T0), ev("z", "u9", T0 + H + 1))
    _, got = await run(pipe, first)
    again_pipe = Pipeline(pipe._settings, store=MemoryWindowStore.from_settings(pipe._settings),
                          scorer=FixedScorer(), outcomes=OutcomeTracker(
                              pipe.outcomes.state, lateness_ms=0, max_pending=100,
                              sweep_users=1000))  # a restarted worker on the same state
    _, again = await run(again_pipe, first)
    assert [o["event_id"] for o in got] == ["a"] and again == []


async def test_a_sample_of_users_gets_outcomes_and_shadow_scores():
    settings = load_settings(anomaly_enabled=False)
    tracker = OutcomeTracker(MemoryOutcomeState(), lateness_ms=0, max_pending=100,
                             sweep_users=1000, sample=0.5)
    shadow = FixedScorer(0.75)
    calls = []
    shadow.score = lambda inputs: calls.append(len(inputs)) or [0.75] * len(inputs)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=FixedScorer(), outcomes=tracker, shadow=shadow)
    users = [f"u{i}" for i in range(200)]
    tracked = {u for u in users if tracker.tracks(u)}
    assert 70 < len(tracked) < 130  # about half, and always the same half
    assert tracked == {u for u in users if tracker.tracks(u)}
    await run(pipe, batch(*(ev(f"a{u}", u, T0) for u in users)))
    _, got = await run(pipe, batch(ev("z", "late", T0 + H + 1)))
    assert {o["user_id"] for o in got} == tracked
    assert all("shadow" in o for o in got) and calls[0] == len(tracked)
    with pytest.raises(ValueError):
        OutcomeTracker(MemoryOutcomeState(), lateness_ms=0, max_pending=1, sweep_users=1,
                       sample=0)


async def test_a_partition_revoked_since_prepare_is_not_swept():
    pipe, _ = make()
    await run(pipe, batch(ev("a", "u1", T0)))
    prepared = await pipe.prepare(batch(ev("z", "u9", T0 + H + 1)))  # u1's horizon passed
    pipe.outcomes.watermarks.forget([("clickstream", 0)])  # a rebalance took partition 0
    assert (await pipe.finish(prepared)).outcomes == []  # its new owner sweeps it
    _, got = await run(pipe, batch(ev("y", "u8", T0 + H + 2)))  # ours again, say
    assert [o["event_id"] for o in got] == ["a"]
