"""Numeric context features of a window, in the order of :data:`FEATURE_NAMES`.

Every value is a log1p of a count, duration (seconds) or price (or a difference of two
such logs), a 0/1 flag, or a sine/cosine, so a linear layer can use them without a fitted
scaler. Times are event times measured at the newest event, never the wall clock.

The features from ``newest_is_view`` on describe the newest event's product and session
and the last minutes; they were the GBDT baseline's own extra features and are shared
here, so that the model and the baseline see the same hand-crafted features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from worker.features.window import oldest_first

EVENT_TYPES = ("view", "search", "add_to_cart", "remove_from_cart", "purchase", "review")
DEVICES = ("desktop", "mobile", "tablet", "other", "unknown")
DEVICE_ALIASES = {
    "desktop": "desktop", "pc": "desktop", "computer": "desktop", "laptop": "desktop",
    "mobile": "mobile", "phone": "mobile", "smartphone": "mobile",
    "tablet": "tablet",
}

FEATURE_NAMES: tuple[str, ...] = (
    "events_log",
    *(f"{t}_log" for t in EVENT_TYPES),
    "span_log_s",
    "gap_mean_log_s",
    "gap_min_log_s",
    "gap_last_log_s",
    "price_last_log",
    "price_mean_log",
    "price_max_log",
    "price_std_log",
    "products_log",
    "categories_log",
    "newest_product_seen",
    "carts_unpurchased_log",
    *(f"device_{d}" for d in DEVICES),
    "hour_sin",
    "hour_cos",
    "newest_is_view",
    "newest_is_cart",
    "newest_is_remove",
    "newest_product_views_log",
    "newest_product_carts_log",
    "newest_category_events_log",
    "session_events_log",
    "session_span_log_s",
    "sessions_log",
    "price_last_minus_mean_log",
    "newest_has_category",
    "newest_has_brand",
    "carts_10min_log",
    "events_5min_log",
    "cart_age_log_s",
    "newest_product_carted",
)
RECENT_CARTS_MS = 600_000  # carts_10min_log
RECENT_EVENTS_MS = 300_000  # events_5min_log
NO_CART_AGE_S = 7200.0  # cart_age_log_s of a window without add-to-cart: twice the default span


def context_features(window: Sequence[dict]) -> tuple[float, ...]:
    """The features of a window (any order; sorted by event time here). Empty -> ValueError."""
    events = oldest_first(window)
    newest = events[-1]
    log1p = math.log1p

    counts = dict.fromkeys(EVENT_TYPES, 0)
    for e in events:
        if e["event_type"] in counts:
            counts[e["event_type"]] += 1

    ts = [e["ts"] for e in events]
    gaps = [(b - a) / 1000 for a, b in zip(ts, ts[1:], strict=False)]
    if gaps:
        gap_mean, gap_min, gap_last = sum(gaps) / len(gaps), min(gaps), gaps[-1]
    else:
        gap_mean = gap_min = gap_last = 0.0

    prices = [log1p(p) for e in events if (p := _price(e)) is not None]
    if prices:
        mean = sum(prices) / len(prices)
        std = math.sqrt(sum((p - mean) ** 2 for p in prices) / len(prices))
        price_stats = (prices[-1], mean, max(prices), std)
    else:
        price_stats = (0.0, 0.0, 0.0, 0.0)

    products = [_product_id(e) for e in events]
    categories = {c for e in events if (c := e.get("product", {}).get("category"))}
    newest_product = products[-1]
    seen = newest_product is not None and newest_product in products[:-1]

    device = _device(newest)
    hour = (newest["ts"] // 1000 % 86_400) / 3600
    angle = 2 * math.pi * hour / 24

    kind, now = newest["event_type"], newest["ts"]
    product = newest.get("product") or {}
    category = product.get("category")
    same_product = [e for e, p in zip(events, products, strict=True)
                    if newest_product is not None and p == newest_product]
    session = newest.get("session_id")
    in_session = [e for e in events if e.get("session_id") == session] if session else events
    carts = [e["ts"] for e in events if e["event_type"] == "add_to_cart"]

    return (
        log1p(len(events)),
        *(log1p(counts[t]) for t in EVENT_TYPES),
        log1p((newest["ts"] - events[0]["ts"]) / 1000),
        log1p(gap_mean),
        log1p(gap_min),
        log1p(gap_last),
        *price_stats,
        log1p(len({p for p in products if p is not None})),
        log1p(len(categories)),
        1.0 if seen else 0.0,
        log1p(_carts_unpurchased(events, products)),
        *(1.0 if device == d else 0.0 for d in DEVICES),
        math.sin(angle),
        math.cos(angle),
        float(kind == "view"),
        float(kind == "add_to_cart"),
        float(kind == "remove_from_cart"),
        log1p(sum(e["event_type"] == "view" for e in same_product)),
        log1p(sum(e["event_type"] == "add_to_cart" for e in same_product)),
        log1p(sum(category is not None and (e.get("product") or {}).get("category") == category
                  for e in events)),
        log1p(len(in_session)),
        log1p((now - in_session[0]["ts"]) / 1000),
        log1p(len({e.get("session_id") for e in events})),
        price_stats[0] - price_stats[1],
        float(category is not None),
        float(product.get("brand") is not None),
        log1p(sum(now - t <= RECENT_CARTS_MS for t in carts)),
        log1p(sum(now - e["ts"] <= RECENT_EVENTS_MS for e in events)),
        log1p((now - carts[-1]) / 1000 if carts else NO_CART_AGE_S),
        float(any(e["event_type"] == "add_to_cart" for e in same_product)),
    )


def _carts_unpurchased(events: list[dict], products: list[str | None]) -> int:
    """Add-to-cart events with no later purchase of the same product (of any, if no product id)."""
    count = 0
    purchased_after: set[str | None] = set()
    any_purchase_after = False
    for event, product in zip(reversed(events), reversed(products), strict=True):
        if event["event_type"] == "purchase":
            purchased_after.add(product)
            any_purchase_after = True
        elif event["event_type"] == "add_to_cart":
            bought = any_purchase_after if product is None else product in purchased_after
            count += not bought
    return count


def _product_id(event: dict) -> str | None:
    product = event.get("product")
    return product.get("id") if product else None


def _price(event: dict) -> float | None:
    price = event.get("product", {}).get("price")
    if isinstance(price, bool) or not isinstance(price, int | float):
        return None
    if not math.isfinite(price) or price < 0:
        return None
    return float(price)


def _device(event: dict) -> str:
    device = event.get("context", {}).get("device")
    if not isinstance(device, str) or not device.strip():
        return "unknown"
    return DEVICE_ALIASES.get(device.strip().lower(), "other")
