"""Numeric context features of a window, in the order of :data:`FEATURE_NAMES`.

Every value is a log1p of a count, duration (seconds) or price (or a difference of two
such logs), a 0/1 flag, or a sine/cosine, so a linear layer can use them without a fitted
scaler. Times are event times measured at the newest event, never the wall clock.

The features from ``newest_is_view`` on describe the newest event's product and session
and the last minutes; they were the GBDT baseline's own extra features and are shared
here, so that the model and the baseline see the same hand-crafted features.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from itertools import compress, repeat
from operator import eq, is_not, sub, truediv

from worker.features.facts import (
    CATEGORY,
    EVENT,
    EVENT_TYPES,
    KIND_CODES,
    LATER,
    NEWEST,
    PRODUCT,
    SESSION,
    window_facts,
)

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
VIEW, CART, PURCHASE = (KIND_CODES[t] for t in ("view", "add_to_cart", "purchase"))
_FLAGS = (0.0, 1.0)
_DEVICE_ONE_HOT = {device: tuple(1.0 if device == d else 0.0 for d in DEVICES)
                   for device in DEVICES}


def context_features(window: Sequence[dict]) -> tuple[float, ...]:
    """The features of a window (any order; sorted by event time here). Empty -> ValueError."""
    return facts_features(window_facts(window))


def facts_features(facts: Sequence[tuple]) -> tuple[float, ...]:
    """:func:`context_features` of a window's facts (:mod:`worker.features.facts`, oldest first).

    This runs for every scored window (the worker's largest per-event cost after the model),
    so it works on columns of the facts with C-level operations (``map``, ``compress``,
    ``count``) rather than a Python loop per event, and what depends on the newest event alone
    is kept in its facts. Float sums are taken with ``sum`` over lists in event order, so the
    values do not depend on how the pass is organised.
    """
    ts, codes, log_prices, products, categories, sessions = list(zip(*facts, strict=True))[:6]
    kinds = bytes(codes)  # KIND_CODES: count() and find() scan bytes at C speed
    newest = facts[-1]
    log1p = math.log1p
    n = len(ts)
    now = ts[-1]
    newest_product, category, session = newest[PRODUCT], newest[CATEGORY], newest[SESSION]
    newest_only = newest[LATER][NEWEST]
    if newest_only is None:
        newest_only = newest[LATER][NEWEST] = _newest_only(newest[EVENT])

    if n > 1:
        gaps = list(map(truediv, map(sub, ts[1:], ts), repeat(1000, n - 1)))
        gap_mean, gap_min, gap_last = sum(gaps) / len(gaps), min(gaps), gaps[-1]
    else:
        gap_mean = gap_min = gap_last = 0.0
    prices = list(compress(log_prices, map(is_not, log_prices, repeat(None, n))))
    if prices:
        mean = sum(prices) / len(prices)
        std = math.sqrt(sum([(p - mean) ** 2 for p in prices]) / len(prices))
        price_stats = (prices[-1], mean, max(prices), std)
    else:
        price_stats = (0.0, 0.0, 0.0, 0.0)
    distinct_products = set(products)
    distinct_products.discard(None)
    if newest_product is None:
        same_views = same_carts = 0
    else:  # the kinds of the events of the newest event's product
        same = bytes(compress(codes, map(eq, products, repeat(newest_product, n))))
        same_views, same_carts = same.count(VIEW), same.count(CART)
    if session:
        in_session, session_start = sessions.count(session), ts[sessions.index(session)]
    else:
        in_session, session_start = n, ts[0]
    if CART in kinds:
        carts = list(compress(ts, map(eq, codes, repeat(CART, n))))
        unpurchased = _carts_unpurchased(codes, products) if PURCHASE in kinds else len(carts)
        recent_carts = _count_within(carts, now, RECENT_CARTS_MS)
        cart_age_s = (now - carts[-1]) / 1000
    else:
        unpurchased = recent_carts = 0
        cart_age_s = NO_CART_AGE_S

    return (
        log1p(n),
        *map(log1p, map(kinds.count, range(len(EVENT_TYPES)))),
        log1p((now - ts[0]) / 1000),
        log1p(gap_mean),
        log1p(gap_min),
        log1p(gap_last),
        *price_stats,
        log1p(len(distinct_products)),
        log1p(len([c for c in set(categories) if c])),
        1.0 if newest_product is not None and newest_product in products[:-1] else 0.0,
        log1p(unpurchased),
        *newest_only[0],  # device_*, hour_sin, hour_cos, newest_is_*
        log1p(same_views),
        log1p(same_carts),
        log1p(categories.count(category) if category is not None else 0),
        log1p(in_session),
        log1p((now - session_start) / 1000),
        log1p(len(set(sessions))),
        price_stats[0] - price_stats[1],
        *newest_only[1],  # newest_has_category, newest_has_brand
        log1p(recent_carts),
        log1p(_count_within(ts, now, RECENT_EVENTS_MS)),
        log1p(cart_age_s),
        float(same_carts > 0),
    )


def _newest_only(event: dict) -> tuple[tuple[float, ...], tuple[float, float]]:
    """The features that depend on the newest event alone, in two runs of
    :data:`FEATURE_NAMES`: ``device_*`` to ``newest_is_remove``, and ``newest_has_*``."""
    kind = event["event_type"]
    hour = (event["ts"] // 1000 % 86_400) / 3600
    angle = 2 * math.pi * hour / 24
    product = event.get("product") or {}
    flags = _FLAGS  # shared 0.0 / 1.0: kept for every event while cached
    return ((*_DEVICE_ONE_HOT[_device(event)], math.sin(angle), math.cos(angle),
             flags[kind == "view"], flags[kind == "add_to_cart"],
             flags[kind == "remove_from_cart"]),
            (flags[product.get("category") is not None], flags[product.get("brand") is not None]))


def _count_within(times: Sequence[int], now: int, span_ms: int) -> int:
    """How many of ``times`` (ascending) have ``now - t <= span_ms``: a binary search on that
    test itself (it holds from some index on), so it is exact for any numbers."""
    return len(times) - bisect.bisect_left(times, True, key=lambda t: now - t <= span_ms)


def _carts_unpurchased(codes: Sequence[int], products: Sequence[str | None]) -> int:
    """Add-to-cart events with no later purchase of the same product (of any, if no product id)."""
    count = 0
    purchased_after: set[str | None] = set()
    any_purchase_after = False
    for code, product in zip(reversed(codes), reversed(products), strict=True):
        if code == PURCHASE:
            purchased_after.add(product)
            any_purchase_after = True
        elif code == CART:
            bought = any_purchase_after if product is None else product in purchased_after
            count += not bought
    return count


def _device(event: dict) -> str:
    device = event.get("context", {}).get("device")
    if not isinstance(device, str) or not device.strip():
        return "unknown"
    return DEVICE_ALIASES.get(device.strip().lower(), "other")
