"""CategoryStats: running median and MAD of log prices, serialisable."""

from __future__ import annotations

import math

import orjson
import pytest

from worker.anomaly import CategoryStats, update_category_stats
from worker.anomaly.stats import MAD_SCALE, log_price
from worker.errors import ConfigError


def test_median_and_mad_of_log_prices() -> None:
    st = CategoryStats(10)
    for p in (10.0, 100.0, 1000.0):
        st.add(p)
    med, mad = st.median_mad()
    assert med == pytest.approx(math.log(100.0))
    assert mad == pytest.approx(math.log(10.0))
    assert st.median_price() == pytest.approx(100.0)
    z = st.robust_z(100_000.0, min_mad=0.1)
    assert z == pytest.approx(3 * math.log(10) / (MAD_SCALE * math.log(10)))
    assert st.robust_z(1.0, min_mad=0.1) < 0


def test_sample_keeps_the_last_capacity_prices() -> None:
    st = CategoryStats(3)
    for p in (1.0, 2.0, 3.0, 400.0, 500.0, 600.0):
        st.add(p)
    assert len(st) == 3 and st.count == 6
    assert st.median_price() == pytest.approx(500.0)


def test_mad_floor_and_price_floor() -> None:
    st = CategoryStats(10)
    for _ in range(5):
        st.add(20.0)
    assert st.median_mad()[1] == 0.0
    assert st.robust_z(40.0, min_mad=0.15) == pytest.approx(math.log(2) / (MAD_SCALE * 0.15))
    assert log_price(0.0) == log_price(0.01) and math.isfinite(st.robust_z(0.0, min_mad=0.15))


def test_empty_stats_have_no_median() -> None:
    with pytest.raises(ValueError):
        CategoryStats(5).median_mad()
    with pytest.raises(ValueError):
        CategoryStats(0)


def test_round_trip_through_json() -> None:
    st = CategoryStats(4)
    for p in (3.5, 7.25, 1.0, 99.99, 12.0):
        st.add(p)
    data = orjson.loads(orjson.dumps(st.to_dict()))
    back = CategoryStats.from_dict(data)
    assert back == st
    assert back.median_mad() == st.median_mad()
    back.add(5.0)  # still bounded by its capacity
    assert len(back) == 4 and back.count == 6


@pytest.mark.parametrize("data", [
    {},
    {"v": 2, "capacity": 4, "count": 1, "logs": [1.0]},
    {"v": 1, "capacity": 4, "count": 0, "logs": [1.0]},
    {"v": 1, "capacity": 1, "count": 2, "logs": [1.0, 2.0]},
    {"v": 1, "capacity": 4, "count": 1, "logs": ["x"]},
    {"v": 1, "capacity": 4, "count": 1, "logs": [float("nan")]},
])
def test_bad_dicts_are_refused(data: dict) -> None:
    with pytest.raises(ConfigError):
        CategoryStats.from_dict(data)


def _ev(eid: str, ts: int, etype: str, category: str | None, price: float | None) -> dict:
    product: dict = {"id": "p"}
    if category:
        product["category"] = category
    if price is not None:
        product["price"] = price
    return {"event_id": eid, "user_id": "u", "event_type": etype, "ts": ts, "product": product}


def test_update_uses_priced_views_carts_and_purchases_in_event_time_order() -> None:
    events = [_ev("c", 3, "purchase", "a", 30.0), _ev("a", 1, "view", "a", 10.0),
              _ev("b", 2, "add_to_cart", "b", 20.0), _ev("d", 4, "remove_from_cart", "a", 1.0),
              _ev("e", 5, "view", None, 5.0), _ev("f", 6, "view", "a", None),
              {"event_id": "g", "user_id": "u", "event_type": "search", "ts": 7, "query": "x"}]
    stats: dict = {}
    touched = update_category_stats(stats, events, capacity=2)
    assert touched == {"a", "b"}
    assert stats["a"].count == 2 and stats["b"].count == 1
    other: dict = {}
    update_category_stats(other, list(reversed(events)), capacity=2)
    assert other == stats
