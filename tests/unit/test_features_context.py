"""context_features on hand-made windows with fixed event times."""

from __future__ import annotations

import math
import random

import pytest

from worker.features import FEATURE_NAMES, context_features

DAY0 = 1_570_060_800_000  # 2019-10-03T00:00:00Z, epoch ms
log1p = math.log1p


def ev(event_id: str, event_type: str, ts: int, **fields: object) -> dict:
    return {"event_id": event_id, "user_id": "u1", "event_type": event_type, "ts": ts, **fields}


def prod(pid: str, price: float | None = None, category: str | None = None) -> dict:
    p: dict = {"id": pid}
    if price is not None:
        p["price"] = price
    if category is not None:
        p["category"] = category
    return p


def feats(window: list[dict]) -> dict[str, float]:
    values = context_features(window)
    assert len(values) == len(FEATURE_NAMES)
    return dict(zip(FEATURE_NAMES, values, strict=True))


def test_names_unique() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_counts_by_type() -> None:
    types = ["view", "view", "view", "search", "add_to_cart", "remove_from_cart", "purchase",
             "review"]
    f = feats([ev(f"e{i}", t, DAY0 + i * 1000) for i, t in enumerate(types)])
    assert f["events_log"] == pytest.approx(log1p(8))
    assert f["view_log"] == pytest.approx(log1p(3))
    for t in ("search", "add_to_cart", "remove_from_cart", "purchase", "review"):
        assert f[f"{t}_log"] == pytest.approx(log1p(1))


def test_span_and_gaps() -> None:
    f = feats([ev("a", "view", DAY0), ev("b", "view", DAY0 + 10_000),
               ev("c", "view", DAY0 + 40_000), ev("d", "view", DAY0 + 100_000)])
    assert f["span_log_s"] == pytest.approx(log1p(100))
    assert f["gap_mean_log_s"] == pytest.approx(log1p((10 + 30 + 60) / 3))
    assert f["gap_min_log_s"] == pytest.approx(log1p(10))
    assert f["gap_last_log_s"] == pytest.approx(log1p(60))


def test_single_event_has_zero_times() -> None:
    f = feats([ev("a", "view", DAY0 + 5_000)])
    for name in ("span_log_s", "gap_mean_log_s", "gap_min_log_s", "gap_last_log_s"):
        assert f[name] == 0.0
    assert f["events_log"] == pytest.approx(log1p(1))


def test_price_statistics() -> None:
    f = feats([ev("a", "view", DAY0, product=prod("p1", 100.0)),
               ev("b", "search", DAY0 + 1000, query="x"),
               ev("c", "view", DAY0 + 2000, product=prod("p2", 300.0)),
               ev("d", "view", DAY0 + 3000, product=prod("p3"))])  # no price
    logs = [log1p(100), log1p(300)]
    mean = sum(logs) / 2
    assert f["price_last_log"] == pytest.approx(log1p(300))
    assert f["price_mean_log"] == pytest.approx(mean)
    assert f["price_max_log"] == pytest.approx(log1p(300))
    assert f["price_std_log"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in logs) / 2))


def test_no_prices_gives_zeros() -> None:
    f = feats([ev("a", "search", DAY0, query="tv")])
    assert [f[n] for n in ("price_last_log", "price_mean_log", "price_max_log",
                           "price_std_log")] == [0.0] * 4


def test_distinct_products_and_categories() -> None:
    f = feats([ev("a", "view", DAY0, product=prod("p1", category="electronics.smartphone")),
               ev("b", "view", DAY0 + 1, product=prod("p2", category="electronics.smartphone")),
               ev("c", "view", DAY0 + 2, product=prod("p1", category="electronics.smartphone")),
               ev("d", "view", DAY0 + 3, product=prod("p3", category="computers.notebook")),
               ev("e", "search", DAY0 + 4, query="x")])
    assert f["products_log"] == pytest.approx(log1p(3))
    assert f["categories_log"] == pytest.approx(log1p(2))


def test_newest_product_seen_before() -> None:
    seen = [ev("a", "view", DAY0, product=prod("p1")),
            ev("b", "view", DAY0 + 1, product=prod("p2")),
            ev("c", "add_to_cart", DAY0 + 2, product=prod("p1"))]
    assert feats(seen)["newest_product_seen"] == 1.0
    fresh = [*seen[:2], ev("c", "view", DAY0 + 2, product=prod("p3"))]
    assert feats(fresh)["newest_product_seen"] == 0.0
    no_product = [*seen[:2], ev("c", "search", DAY0 + 2, query="p1")]
    assert feats(no_product)["newest_product_seen"] == 0.0


def test_carts_not_followed_by_purchase() -> None:
    w = [ev("a", "purchase", DAY0, product=prod("p3")),       # before the cart: does not count
         ev("b", "add_to_cart", DAY0 + 1, product=prod("p1")),
         ev("c", "add_to_cart", DAY0 + 2, product=prod("p2")),
         ev("d", "add_to_cart", DAY0 + 3, product=prod("p3")),
         ev("e", "purchase", DAY0 + 4, product=prod("p1"))]
    assert feats(w)["carts_unpurchased_log"] == pytest.approx(log1p(2))  # p2 and p3
    assert feats(w[:1])["carts_unpurchased_log"] == 0.0


@pytest.mark.parametrize(("device", "hot"), [
    ("desktop", "device_desktop"), ("Mobile", "device_mobile"), ("tablet", "device_tablet"),
    ("smart-tv", "device_other"), (None, "device_unknown"),
])
def test_device_one_hot_of_newest_event(device: str | None, hot: str) -> None:
    newest = ev("b", "view", DAY0 + 1)
    if device is not None:
        newest["context"] = {"device": device}
    f = feats([ev("a", "view", DAY0, context={"device": "desktop"}), newest])
    devices = [n for n in FEATURE_NAMES if n.startswith("device_")]
    assert [f[n] for n in devices] == [1.0 if n == hot else 0.0 for n in devices]


@pytest.mark.parametrize(("hour", "sin", "cos"), [(0, 0.0, 1.0), (6, 1.0, 0.0), (12, 0.0, -1.0),
                                                  (18, -1.0, 0.0)])
def test_hour_of_newest_event_utc(hour: int, sin: float, cos: float) -> None:
    f = feats([ev("a", "view", DAY0 - 5 * 3_600_000), ev("b", "view", DAY0 + hour * 3_600_000)])
    assert f["hour_sin"] == pytest.approx(sin, abs=1e-9)
    assert f["hour_cos"] == pytest.approx(cos, abs=1e-9)


def realistic() -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(50):
        kind = rng.choice(["view"] * 6 + ["add_to_cart", "search", "purchase"])
        extra = ({"query": "phone"} if kind == "search" else
                 {"product": prod(f"p{rng.randrange(8)}", rng.uniform(1, 5000),
                                  rng.choice(["a.b", "c.d"]))})
        out.append(ev(f"e{i:02d}", kind, DAY0 + i * rng.randrange(1, 70_000), **extra))
    return out


def test_independent_of_input_order_and_deterministic() -> None:
    w = realistic()
    shuffled = w[:]
    random.Random(3).shuffle(shuffled)
    assert context_features(w) == context_features(shuffled) == context_features(realistic())


def test_values_are_bounded() -> None:
    values = context_features(realistic())
    assert all(math.isfinite(x) and -1.0 <= x <= 15.0 for x in values)


def test_empty_window() -> None:
    with pytest.raises(ValueError, match="empty window"):
        context_features([])


def test_newest_product_session_and_recent_features() -> None:
    p1 = {"id": "p1", "price": 100.0, "category": "electronics.smartphone", "brand": "apple"}
    w = [ev("a", "view", DAY0, session_id="s0", product=prod("p9", 10.0)),
         ev("b", "view", DAY0 + 3_000_000, session_id="s1", product=p1),
         ev("c", "add_to_cart", DAY0 + 3_300_000, session_id="s1", product=p1),
         ev("d", "view", DAY0 + 3_420_000, session_id="s1", product=p1)]
    f = feats(w)
    assert (f["newest_is_view"], f["newest_is_cart"], f["newest_is_remove"]) == (1.0, 0.0, 0.0)
    assert f["newest_product_views_log"] == pytest.approx(log1p(2))
    assert f["newest_product_carts_log"] == pytest.approx(log1p(1))
    assert f["newest_product_carted"] == 1.0
    assert f["newest_category_events_log"] == pytest.approx(log1p(3))
    assert f["session_events_log"] == pytest.approx(log1p(3))
    assert f["session_span_log_s"] == pytest.approx(log1p(420))
    assert f["sessions_log"] == pytest.approx(log1p(2))
    assert (f["newest_has_category"], f["newest_has_brand"]) == (1.0, 1.0)
    assert f["carts_10min_log"] == pytest.approx(log1p(1))  # the cart was 120 s ago
    assert f["events_5min_log"] == pytest.approx(log1p(2))  # c and d
    assert f["cart_age_log_s"] == pytest.approx(log1p(120))
    logs = [log1p(10), log1p(100), log1p(100), log1p(100)]
    assert f["price_last_minus_mean_log"] == pytest.approx(logs[-1] - sum(logs) / 4)


def test_window_without_cart_or_product() -> None:
    f = feats([ev("a", "search", DAY0, query="tv")])
    assert f["cart_age_log_s"] == pytest.approx(log1p(7200))
    assert f["newest_product_views_log"] == 0.0 and f["newest_product_carted"] == 0.0
    assert (f["newest_has_category"], f["newest_has_brand"]) == (0.0, 0.0)
    assert f["sessions_log"] == pytest.approx(log1p(1))
