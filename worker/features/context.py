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
NO_PRODUCT: dict = {}  # read-only stand-in for an event without a product
NO_CART_AGE_S = 7200.0  # cart_age_log_s of a window without add-to-cart: twice the default span


def context_features(window: Sequence[dict]) -> tuple[float, ...]:
    """The features of a window (any order; sorted by event time here). Empty -> ValueError.

    One pass over the events (this runs for every scored window: the worker's largest
    per-event cost after the model); float sums are taken with ``sum`` over lists, in event
    order, so the values do not depend on how the pass is organised.
    """
    events = oldest_first(window)
    newest = events[-1]
    log1p = math.log1p
    now, kind = newest["ts"], newest["event_type"]
    newest_product = _product_id(newest)
    product = newest.get("product") or {}
    category = product.get("category")
    session = newest.get("session_id")

    counts = dict.fromkeys(EVENT_TYPES, 0)
    gaps: list[float] = []
    prices: list[float] = []
    products: list[str | None] = []
    categories: set = set()
    sessions: set = set()
    same_views = same_carts = same_category = 0
    in_session, session_start = 0, now
    carts: list[int] = []
    recent_events = 0
    previous_ts = None
    isfinite = math.isfinite
    for e in events:
        event_type, ts = e["event_type"], e["ts"]
        if event_type in counts:
            counts[event_type] += 1
        if previous_ts is not None:
            gaps.append((ts - previous_ts) / 1000)
        previous_ts = ts
        event_product = e.get("product") or NO_PRODUCT  # an object when present (schema)
        price = event_product.get("price")  # as _price: a finite number >= 0, not a bool
        if isinstance(price, int | float) and price is not True and price is not False \
                and isfinite(price) and price >= 0:
            prices.append(log1p(float(price)))
        product_id = event_product.get("id") if event_product else None
        products.append(product_id)
        c = event_product.get("category")
        if c:
            categories.add(c)
        if category is not None and c == category:
            same_category += 1
        if newest_product is not None and product_id == newest_product:
            same_views += event_type == "view"
            same_carts += event_type == "add_to_cart"
        event_session = e.get("session_id")
        sessions.add(event_session)
        if not session or event_session == session:
            if not in_session:
                session_start = ts
            in_session += 1
        if event_type == "add_to_cart":
            carts.append(ts)
        recent_events += now - ts <= RECENT_EVENTS_MS

    if gaps:
        gap_mean, gap_min, gap_last = sum(gaps) / len(gaps), min(gaps), gaps[-1]
    else:
        gap_mean = gap_min = gap_last = 0.0
    if prices:
        mean = sum(prices) / len(prices)
        std = math.sqrt(sum((p - mean) ** 2 for p in prices) / len(prices))
        price_stats = (prices[-1], mean, max(prices), std)
    else:
        price_stats = (0.0, 0.0, 0.0, 0.0)
    seen = newest_product is not None and newest_product in products[:-1]
    device = _device(newest)
    hour = (now // 1000 % 86_400) / 3600
    angle = 2 * math.pi * hour / 24

    return (
        log1p(len(events)),
        *(log1p(counts[t]) for t in EVENT_TYPES),
        log1p((now - events[0]["ts"]) / 1000),
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
        log1p(same_views),
        log1p(same_carts),
        log1p(same_category),
        log1p(in_session),
        log1p((now - session_start) / 1000),
        log1p(len(sessions)),
        price_stats[0] - price_stats[1],
        float(category is not None),
        float(product.get("brand") is not None),
        log1p(sum(now - t <= RECENT_CARTS_MS for t in carts)),
        log1p(recent_events),
        log1p((now - carts[-1]) / 1000 if carts else NO_CART_AGE_S),
        float(same_carts > 0),
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
