"""The four anomaly detectors on fixed event time (never the wall clock)."""

from __future__ import annotations

import random

import pytest

from worker.anomaly import (
    CategoryStats,
    Cooldown,
    DetectorConfig,
    ModelRef,
    detect_all,
    detect_bot_cadence,
    detect_out_of_character,
    detect_price_outlier,
    detect_purchase_velocity,
    ooc_candidates,
)
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000  # fixed event time, epoch ms
CFG = DetectorConfig().validate()
MODEL = ModelRef("intent-minilm", "1.0.0")


def ev(event_id: str, ts: int, etype: str = "view", *, user: str = "u1", product: str = "p1",
       price: float | None = 100.0, category: str | None = "electronics.smartphone") -> dict:
    prod: dict = {"id": product}
    if category is not None:
        prod["category"] = category
    if price is not None:
        prod["price"] = price
    return {"event_id": event_id, "user_id": user, "event_type": etype, "ts": ts, "product": prod}


def buy(event_id: str, ts: int, **kw: object) -> dict:
    return ev(event_id, ts, "purchase", **kw)


async def windows_of(batches: list[list[dict]], *, max_events: int = 50,
                     span_ms: int = 3_600_000) -> list[tuple[list[dict], list[dict]]]:
    """Feed batches through the worker's window semantics: [(window after, batch)]."""
    store = MemoryWindowStore(max_events=max_events, span_ms=span_ms)
    out = []
    for batch in batches:
        by_user: dict[str, list[dict]] = {}
        for e in batch:
            by_user.setdefault(e["user_id"], []).append(e)
        windows = await store.append(by_user)
        for user, events in by_user.items():
            out.append((windows[user], events))
    return out


def emitted(alerts_per_batch: list[list], cooldown_s: float = CFG.cooldown_s) -> list:
    cd, state, out = Cooldown(cooldown_s), {}, []
    for alerts in alerts_per_batch:
        sent, updates = cd.apply(alerts, state)
        state.update(updates)
        out.extend(sent)
    return out


# -- purchase velocity ------------------------------------------------------------------------

def test_velocity_fires_at_the_fifth_purchase_within_the_span() -> None:
    window = [buy(f"b{i}", T0 + i * 60_000, product=f"p{i}") for i in range(5)]
    alerts = detect_purchase_velocity(window, window, CFG)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.kind == "purchase_velocity" and a.user_id == "u1"
    assert a.evidence["event_ids"] == [f"b{i}" for i in range(5)]
    assert a.evidence["purchases"] == 5 and a.evidence["trigger"] == "count"
    assert a.evidence["span_s"] == 240.0 and a.evidence["spend"] == 500.0
    assert a.evidence["thresholds"] == {"min_purchases": 5, "min_spend": 5000.0, "span_s": 600.0}
    assert a.event_ts == T0 + 4 * 60_000 and a.severity == "medium" and a.model is None


def test_velocity_does_not_fire_below_the_count_or_outside_the_span() -> None:
    four = [buy(f"b{i}", T0 + i * 1000, product=f"p{i}") for i in range(4)]
    assert detect_purchase_velocity(four, four, CFG) == []
    # five purchases, but every span of 600 s holds at most four (the span is half-open)
    spread = [buy(f"b{i}", T0 + i * 150_000, product=f"p{i}") for i in range(5)]
    assert detect_purchase_velocity(spread, spread, CFG) == []
    just_inside = [*spread[:4], buy("b4", T0 + 599_999, product="p4")]
    assert len(detect_purchase_velocity(just_inside, just_inside, CFG)) == 1


def test_velocity_fires_on_spend_with_two_purchases_but_never_on_one() -> None:
    one = [buy("b0", T0, price=9000.0)]
    assert detect_purchase_velocity(one, one, CFG) == []
    two = [buy("b0", T0, price=2600.0), buy("b1", T0 + 5000, price=2500.0, product="p2")]
    (a,) = detect_purchase_velocity(two, two, CFG)
    assert a.evidence["trigger"] == "spend" and a.evidence["spend"] == 5100.0


def test_velocity_only_fires_on_new_purchases() -> None:
    window = [buy(f"b{i}", T0 + i * 1000, product=f"p{i}") for i in range(6)]
    assert detect_purchase_velocity(window, [ev("v", T0 + 7000)], CFG) == []


async def test_burst_of_fifty_in_one_batch_is_one_alert_with_evidence() -> None:
    burst = [buy(f"b{i:02d}", T0 + i * 2000, product=f"p{i}") for i in range(50)]
    [(window, new)] = await windows_of([burst])
    alerts = emitted([detect_all(window, new, config=CFG, stats={}, prior_scores={},
                                 model=None)])
    velocity = [a for a in alerts if a.kind == "purchase_velocity"]
    assert len(velocity) == 1
    assert velocity[0].evidence["event_ids"] == [f"b{i:02d}" for i in range(5)]


async def test_burst_of_fifty_one_at_a_time_gives_the_same_single_alert() -> None:
    burst = [buy(f"b{i:02d}", T0 + i * 2000, product=f"p{i}") for i in range(50)]
    steps = await windows_of([[e] for e in burst])
    per_batch = [detect_purchase_velocity(w, new, CFG) for w, new in steps]
    sent = emitted(per_batch)
    assert len(sent) == 1
    [(window, new)] = await windows_of([burst])
    assert sent[0].alert_id == detect_purchase_velocity(window, new, CFG)[0].alert_id


async def test_velocity_with_out_of_order_arrival() -> None:
    burst = [buy(f"b{i}", T0 + i * 1000, product=f"p{i}") for i in range(5)]
    shuffled = burst[:]
    random.Random(3).shuffle(shuffled)
    steps = await windows_of([shuffled[:2], shuffled[2:]])
    window, new = steps[-1]
    assert [e["event_id"] for e in window] == [f"b{i}" for i in range(5)]
    (a,) = detect_purchase_velocity(window, new, CFG)
    assert a.evidence["event_ids"] == [f"b{i}" for i in range(5)]
    # an unsorted window handed in directly is sorted by the detector
    (b,) = detect_purchase_velocity(list(reversed(burst)), burst, CFG)
    assert b.alert_id == a.alert_id


# -- bot cadence ------------------------------------------------------------------------------

def _session(gaps_ms: list[int], *, prefix: str = "e") -> list[dict]:
    ts, out = T0, [ev(f"{prefix}00", T0, product="p0")]
    for i, gap in enumerate(gaps_ms, start=1):
        ts += gap
        out.append(ev(f"{prefix}{i:02d}", ts, product=f"p{i}"))
    return out


def test_bot_fires_on_short_gaps() -> None:
    window = _session([200, 300, 250, 150, 400, 350, 100, 300, 200, 250, 300])
    (a,) = detect_bot_cadence(window, window, CFG)
    assert a.kind == "bot_cadence" and a.evidence["trigger"] == "short_gaps"
    assert a.evidence["events"] == 12 and len(a.evidence["event_ids"]) == 12
    assert a.evidence["median_gap_s"] == 0.25
    assert a.severity == "low"  # views only


def test_bot_fires_on_regular_gaps_and_says_so() -> None:
    window = _session([3000, 3010, 2990, 3005, 2995, 3000, 3002, 2998, 3001, 2999, 3000])
    (a,) = detect_bot_cadence(window, window, CFG)
    assert a.evidence["trigger"] == "regular_gaps"
    assert a.evidence["cv"] < 0.05 and a.evidence["mean_gap_s"] == pytest.approx(3.0, abs=0.01)


def test_bot_does_not_fire_on_human_gaps_or_short_sessions() -> None:
    human = _session([4000, 17000, 2500, 60000, 9000, 31000, 5000, 12000, 3000, 45000, 8000])
    assert detect_bot_cadence(human, human, CFG) == []
    # regular but slow (mean gap >= 10 s) is not a bot
    slow = _session([30000] * 11)
    assert detect_bot_cadence(slow, slow, CFG) == []
    # fast, but fewer than bot_events events
    short = _session([100] * 10)
    assert detect_bot_cadence(short, short, CFG) == []


def test_bot_severity_follows_what_the_bot_did() -> None:
    window = _session([100] * 11)
    window[5] = {**window[5], "event_type": "add_to_cart"}
    assert detect_bot_cadence(window, window, CFG)[0].severity == "medium"
    window[6] = {**window[6], "event_type": "purchase"}
    assert detect_bot_cadence(window, window, CFG)[0].severity == "high"


async def test_bot_same_alert_whatever_the_batching_and_order() -> None:
    session = _session([150] * 29)
    whole = await windows_of([session])
    (one,) = detect_bot_cadence(*whole[0], CFG)
    shuffled = session[:]
    random.Random(7).shuffle(shuffled)
    steps = await windows_of([shuffled[i:i + 4] for i in range(0, 30, 4)])
    sent = emitted([detect_bot_cadence(w, new, CFG) for w, new in steps])
    # out of order, the first complete run of 12 may differ; the window is sorted and one
    # alert comes out, whose events are consecutive in event time
    assert len(sent) == 1
    ids = sent[0].evidence["event_ids"]
    assert ids == sorted(ids) and len(ids) == 12
    in_order = await windows_of([[e] for e in session])
    sent = emitted([detect_bot_cadence(w, new, CFG) for w, new in in_order])
    assert [a.alert_id for a in sent] == [one.alert_id]


# -- out-of-character purchase ----------------------------------------------------------------

def _browse_then_buy(product: str = "p9", category: str = "furniture.bedroom.bed") -> list[dict]:
    return [ev("v1", T0, product="p1"), ev("v2", T0 + 30_000, product="p2"),
            buy("b1", T0 + 90_000, product=product, category=category)]


def test_ooc_fires_on_an_unseen_product_with_a_low_prior_score() -> None:
    window = _browse_then_buy()
    (cand,) = ooc_candidates(window, window[-1:], CFG)
    assert [e["event_id"] for e in cand.prior_window] == ["v1", "v2"]
    assert cand.category_seen is False
    (a,) = detect_out_of_character(window, window[-1:], prior_scores={"b1": 0.03}, model=MODEL,
                                   config=CFG)
    assert a.kind == "out_of_character_purchase" and a.model == MODEL
    assert a.evidence["event_ids"] == ["b1"] and a.evidence["prior_score"] == 0.03
    assert a.evidence["prior_events"] == 2 and a.evidence["category_seen"] == 0
    assert a.evidence["thresholds"] == {"max_score": CFG.ooc_max_score, "min_prior_events": 1}
    assert a.severity == "high"


def test_ooc_does_not_fire_on_high_or_missing_scores() -> None:
    window = _browse_then_buy()
    for scores in ({"b1": CFG.ooc_max_score}, {"b1": 0.5}, {"b1": None}, {}):
        assert detect_out_of_character(window, window[-1:], prior_scores=scores, model=MODEL,
                                       config=CFG) == []


@pytest.mark.parametrize("etype", ["view", "add_to_cart", "remove_from_cart", "purchase"])
def test_ooc_does_not_fire_when_the_product_was_touched(etype: str) -> None:
    window = _browse_then_buy()
    window.insert(2, ev("t", T0 + 60_000, etype, product="p9", category="furniture.bedroom.bed"))
    assert ooc_candidates(window, window[-1:], CFG) == []


def test_ooc_needs_prior_events_and_a_new_purchase() -> None:
    alone = [buy("b1", T0)]
    assert ooc_candidates(alone, alone, DetectorConfig(ooc_min_prior_events=0)) == []
    window = _browse_then_buy()
    assert ooc_candidates(window, window[:1], CFG) == []  # the purchase is not new
    assert ooc_candidates(window, window[-1:], DetectorConfig(ooc_min_prior_events=3)) == []


def test_ooc_same_category_is_medium() -> None:
    window = _browse_then_buy(category="electronics.smartphone")
    (a,) = detect_out_of_character(window, window[-1:], prior_scores={"b1": 0.01}, model=None,
                                   config=CFG)
    assert a.severity == "medium" and a.evidence["category_seen"] == 1 and a.model is None


async def test_ooc_with_a_late_view_of_the_product() -> None:
    # the view of the product happened before the purchase but arrives after it
    buy_first = [ev("v1", T0), buy("b1", T0 + 90_000, product="p9")]
    late = ev("v9", T0 + 60_000, product="p9")
    steps = await windows_of([buy_first, [late]])
    window, _ = steps[-1]
    assert [e["event_id"] for e in window] == ["v1", "v9", "b1"]
    # redelivered with the late view in place, the purchase is no longer a candidate
    assert ooc_candidates(window, buy_first, CFG) == []
    # a view after the purchase does not count as prior knowledge
    after = [ev("v1", T0), buy("b1", T0 + 90_000, product="p9"),
             ev("v9", T0 + 95_000, product="p9")]
    assert [c.purchase["event_id"] for c in ooc_candidates(after, after, CFG)] == ["b1"]


# -- price outlier ----------------------------------------------------------------------------

def _stats(prices: list[float], category: str = "electronics.smartphone") -> dict:
    st = CategoryStats(200)
    for p in prices:
        st.add(p)
    return {category: st}


PRICES = [100.0 * (1.1 ** (i % 10 - 5)) for i in range(40)]  # ~59..159, median ~100


def test_price_fires_far_above_and_far_below() -> None:
    stats = _stats(PRICES)
    for price, direction in ((100_000.0, "above"), (0.5, "below")):
        window = [buy("b1", T0, price=price)]
        (a,) = detect_price_outlier(window, window, stats=stats, config=CFG)
        assert a.kind == "price_outlier" and a.evidence["direction"] == direction
        assert a.evidence["robust_z"] > CFG.price_max_robust_z
        assert a.evidence["samples"] == 40 and a.evidence["category"] == "electronics.smartphone"
        assert a.evidence["median_price"] == pytest.approx(100.0, rel=0.1)
        assert a.severity == "high"


def test_price_does_not_fire_inside_the_spread_or_on_thin_stats() -> None:
    stats = _stats(PRICES)
    for price in (50.0, 100.0, 300.0):
        window = [buy("b1", T0, price=price)]
        assert detect_price_outlier(window, window, stats=stats, config=CFG) == []
    thin = _stats(PRICES[:19])
    window = [buy("b1", T0, price=100_000.0)]
    assert detect_price_outlier(window, window, stats=thin, config=CFG) == []
    for odd in (buy("b2", T0, price=None), buy("b3", T0, category=None, price=1e6),
                buy("b4", T0, price=1e6, category="unknown.category")):
        assert detect_price_outlier([odd], [odd], stats=stats, config=CFG) == []
    view = ev("v1", T0, price=100_000.0)
    assert detect_price_outlier([view], [view], stats=stats, config=CFG) == []


def test_price_mad_floor_keeps_single_product_categories_quiet() -> None:
    stats = _stats([34.49] * 50)  # MAD 0: every other price would be infinitely far
    near = [buy("b1", T0, price=55.34)]
    assert detect_price_outlier(near, near, stats=stats, config=CFG) == []
    far = [buy("b1", T0, price=34.49 * 10)]
    assert len(detect_price_outlier(far, far, stats=stats, config=CFG)) == 1


def test_price_one_alert_per_outlier_purchase_in_event_time_order() -> None:
    stats = _stats(PRICES)
    window = [buy("b2", T0 + 10, price=1e6, product="x"), buy("b1", T0, price=0.01, product="y"),
              buy("b3", T0 + 20, price=100.0, product="z")]
    alerts = detect_price_outlier(window, window, stats=stats, config=CFG)
    assert [a.evidence["event_ids"] for a in alerts] == [["b1"], ["b2"]]


# -- all together -----------------------------------------------------------------------------

def test_detect_all_is_deterministic_and_ordered() -> None:
    stats = _stats(PRICES)
    burst = [buy(f"b{i}", T0 + i * 100, product=f"q{i}", price=1e6 if i == 0 else 100.0)
             for i in range(12)]
    window = [ev("v0", T0 - 60_000, product="other"), *burst]
    prior = {c.purchase["event_id"]: 0.01 for c in ooc_candidates(window, burst, CFG)}
    kw = {"config": CFG, "stats": stats, "prior_scores": prior, "model": MODEL}
    first = detect_all(window, burst, **kw)
    again = detect_all(list(reversed(window)), list(reversed(burst)), **kw)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert {a.kind for a in first} == {"purchase_velocity", "bot_cadence",
                                       "out_of_character_purchase", "price_outlier"}
    assert [(a.event_ts, a.kind) for a in first] == sorted((a.event_ts, a.kind) for a in first)
    sent = emitted([first])
    assert sorted(a.kind for a in sent) == ["bot_cadence", "out_of_character_purchase",
                                            "price_outlier", "purchase_velocity"]


def test_detectors_ignore_new_events_trimmed_out_of_the_window() -> None:
    kept = [buy(f"b{i}", T0 + i, product=f"p{i}") for i in range(5, 9)]
    trimmed = [buy(f"b{i}", T0 + i, product=f"p{i}") for i in range(5)]
    assert detect_purchase_velocity(kept, trimmed, CFG) == []
