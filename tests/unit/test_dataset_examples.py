"""Labels and windows of training examples, on hand-made events with fixed event times."""

from __future__ import annotations

import random

import pytest

from worker.dataset.examples import LABEL_DEFINITION, LabelSpec, build_examples

T0 = 1_570_000_000_000
MIN = 60_000


def ev(user: str, eid: str, minute: float, kind: str = "view", product: str = "p1") -> dict:
    return {"event_id": eid, "user_id": user, "event_type": kind, "ts": T0 + int(minute * MIN),
            "product": {"id": product, "category": "electronics.smartphone", "price": 100.0}}


def by_id(examples: list) -> dict:
    return {e.event_id: e for e in examples}


def build(events: list[dict], **kw: int) -> dict:
    kw = {"horizon_s": 600, "max_events": 50, "window_seconds": 3600, **kw}
    return by_id(build_examples(events, **kw))


END = ev("z", "end", 120)  # a late event of another user: nothing below is censored


def test_positive_only_for_a_later_purchase_within_the_horizon() -> None:
    events = [ev("a", "a1", 0), ev("a", "a2", 5), ev("a", "buy", 10, "purchase"),
              ev("a", "a3", 11), ev("b", "b1", 0), ev("b", "b2", 1), END]
    out = build(events)
    assert out["a1"].label == 1  # purchase exactly 10 min later: in (ts, ts + 600 s]
    assert out["a2"].label == 1
    assert out["a3"].label == 0  # the purchase came before it
    assert out["b1"].label == 0 and out["b2"].label == 0


def test_purchase_just_past_the_horizon_is_negative() -> None:
    events = [ev("a", "a1", 0), {**ev("a", "buy", 10, "purchase"), "ts": T0 + 10 * MIN + 1}, END]
    assert build(events)["a1"].label == 0
    assert build(events, horizon_s=601)["a1"].label == 1


def test_purchase_at_the_same_time_does_not_count() -> None:
    # (ts, ts + horizon]: a purchase with the very same ts is not "later"
    events = [ev("a", "a1", 3), ev("a", "a0buy", 3, "purchase"), END]
    assert build(events)["a1"].label == 0


def test_purchases_are_never_examples() -> None:
    events = [ev("a", "a1", 0), ev("a", "buy1", 1, "purchase"), ev("a", "buy2", 2, "purchase"),
              ev("a", "a2", 3), END]
    out = build(events)
    assert set(out) == {"a1", "a2"}  # END is censored (it is the last event)
    assert out["a1"].label == 1
    # ...but purchases stay in the window, as in the worker
    assert [e["event_id"] for e in out["a2"].window] == ["a1", "buy1", "buy2", "a2"]


def test_other_users_purchases_never_count() -> None:
    events = [ev("a", "a1", 0), ev("b", "buy", 1, "purchase"), ev("b", "b1", 0.5), END]
    out = build(events)
    assert out["a1"].label == 0
    assert out["b1"].label == 1


def test_censoring_at_the_end_of_the_data() -> None:
    # last event at minute 30; horizon 10 min: examples after minute 20 are left out
    events = [ev("a", "a1", 19), ev("a", "a2", 20), ev("a", "a3", 20.5), ev("b", "b1", 29),
              ev("c", "last", 30)]
    out = build(events)
    assert set(out) == {"a1", "a2"}  # a2: 20 + 10 = 30 is not past the end
    assert build(events, horizon_s=60).keys() == {"a1", "a2", "a3", "b1"}


def test_window_is_the_users_window_right_after_the_event() -> None:
    events = [ev("a", "a1", 0), ev("b", "b1", 1), ev("a", "a2", 2), ev("a", "a3", 3), END]
    out = build(events)
    assert [e["event_id"] for e in out["a3"].window] == ["a1", "a2", "a3"]
    assert [e["event_id"] for e in out["a1"].window] == ["a1"]
    assert all(e["user_id"] == "a" for e in out["a3"].window)
    assert out["a3"].ts == T0 + 3 * MIN and out["a3"].user_id == "a"


def test_window_trimmed_by_count_and_span_like_the_store() -> None:
    events = [ev("a", f"a{i}", i) for i in range(6)] + [ev("a", "late", 40), END]
    out = build(events, max_events=3, window_seconds=30 * 60)
    assert [e["event_id"] for e in out["a5"].window] == ["a3", "a4", "a5"]
    # span: kept iff ts >= newest - span; minute 10 is exactly 30 min before minute 40
    events.append(ev("a", "edge", 10))
    out = build(events, max_events=50, window_seconds=30 * 60)
    assert [e["event_id"] for e in out["late"].window] == ["edge", "late"]


def test_input_order_does_not_matter_and_output_is_time_ordered() -> None:
    events = [ev("a", "a1", 0), ev("a", "a2", 2), ev("b", "b1", 1), ev("a", "buy", 5, "purchase"),
              END]
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    first = build_examples(events, max_events=50, window_seconds=3600)
    again = build_examples(shuffled, max_events=50, window_seconds=3600)
    assert first == again
    assert [e.event_id for e in first] == ["a1", "b1", "a2"]


def test_empty_input_and_bad_horizon() -> None:
    assert build_examples([], max_events=5, window_seconds=60) == []
    with pytest.raises(ValueError):
        build_examples([END], horizon_s=0, max_events=5, window_seconds=60)


def test_label_spec_records_the_definition() -> None:
    spec = LabelSpec(horizon_s=900).to_json()
    assert spec == {"name": "purchase_within_900s", "horizon_s": 900,
                    "definition": LABEL_DEFINITION}


def test_many_events_is_fast_enough() -> None:
    rng = random.Random(0)
    events = [ev(f"u{rng.randrange(300)}", f"e{i}", i / 10,
                 "purchase" if rng.random() < 0.02 else "view") for i in range(5000)]
    out = build_examples(events, max_events=50, window_seconds=3600)
    assert 0 < len(out) < 5000
    assert all(len(e.window) <= 50 for e in out)
