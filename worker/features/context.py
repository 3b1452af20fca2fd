"""Numeric context features of a window, in the order of :data:`FEATURE_NAMES`.

Every value is a log1p of a count, duration (seconds) or price, a 0/1 flag, or a
sine/cosine, so a linear layer can use them without a fitted scaler. Times are event
times measured at the newest event, never the wall clock.
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
)


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
