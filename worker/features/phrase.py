"""One event as a short phrase for the text encoder, without its time.

The words (event type, query, product title, category, brand, review) are the ones the window
text uses (:mod:`worker.features.text`), which adds an age to each phrase. Without the age, a
phrase depends on the event alone, so its vector can be computed once and shared by every
window, user and worker that sees an event like it. The price decides how often that happens:

- ``exact``: the price as the window text writes it (``price 543 EUR``); one phrase per product
  and price, the fewest repeats.
- ``bucket`` (the default for event vectors): a coarse band on a 1-2-5 log scale
  (``price 500-1000 EUR``), so a price change within its band keeps the phrase, and the
  model still reads cheap versus expensive.
- ``none``: no price at all (the context features carry it).
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["FIELD_MAX_CHARS", "PRICE_MODES", "QUERY_MAX_CHARS", "REVIEW_MAX_CHARS",
           "TITLE_MAX_CHARS", "PriceMode", "event_phrase", "price_bucket"]

QUERY_MAX_CHARS = 80
REVIEW_MAX_CHARS = 160
TITLE_MAX_CHARS = 80
FIELD_MAX_CHARS = 40  # category, brand, currency

PriceMode = Literal["bucket", "none", "exact"]
PRICE_MODES: tuple[str, ...] = ("bucket", "none", "exact")

VERBS = {
    "view": "viewed",
    "search": "searched",
    "add_to_cart": "added to cart",
    "remove_from_cart": "removed from cart",
    "purchase": "purchased",
    "review": "reviewed",
}

_STEPS = (1, 2, 5)  # band edges per decade: 1, 2, 5, 10, 20, 50, ...


def event_phrase(event: dict, *, price: PriceMode = "bucket") -> str:
    """One event as a short phrase, without its time cue; ``price`` as the module says."""
    if price not in PRICE_MODES:
        raise ValueError(f"price must be one of {PRICE_MODES}, got {price!r}")
    event_type = event.get("event_type", "")
    verb = VERBS.get(event_type) or _clean(event_type.replace("_", " "), FIELD_MAX_CHARS)
    words = [verb or "event"]
    query = _clean(event.get("query"), QUERY_MAX_CHARS)
    if query:
        words.append(f'"{query}"')
    product = event.get("product")
    if product:
        words.append(_product(product, price))
    review = event.get("review")
    if review:
        words.append(_review(review))
    return " ".join(w for w in words if w)


def price_bucket(price: float) -> str:
    """The band of a price >= 0 on a 1-2-5 log scale: ``0``, ``under 1``, ``1-2``, ``2-5``,
    ``5-10``, ``10-20``, ... (lower edge included, upper edge excluded)."""
    if price <= 0:
        return "0"
    if price < 1:
        return "under 1"
    decade = 10 ** math.floor(math.log10(price))
    if decade * 10 <= price:  # log10's rounding just below a power of ten
        decade *= 10
    elif decade > price:
        decade //= 10
    edges = [step * decade for step in _STEPS] + [10 * decade]
    for low, high in zip(edges, edges[1:], strict=False):
        if price < high:
            return f"{low}-{high}"
    raise AssertionError("unreachable: price < 10 * decade")


def _product(product: dict, price_mode: str) -> str:
    title = _clean(product.get("title"), TITLE_MAX_CHARS)
    category = _clean(_category_words(product.get("category")), FIELD_MAX_CHARS)
    brand = _clean(product.get("brand"), FIELD_MAX_CHARS)
    fields = [title or category or "a product"]
    if title and category:
        fields.append(category)
    if brand and brand.lower() not in fields[0].lower():
        fields.append(brand)
    price = product.get("price")
    if price_mode != "none" and isinstance(price, int | float) and not isinstance(price, bool) \
            and price >= 0:
        currency = _clean(product.get("currency"), FIELD_MAX_CHARS)
        if price_mode == "exact":
            amount = _price(float(price))
        elif math.isfinite(price):
            amount = price_bucket(float(price))
        else:
            return ", ".join(fields)
        fields.append(f"price {amount}" + (f" {currency}" if currency else ""))
    return ", ".join(fields)


def _review(review: dict) -> str:
    words = []
    rating = review.get("rating")
    if isinstance(rating, int | float) and not isinstance(rating, bool):
        words.append(f"rated {rating:g}")
    text = _clean(review.get("text"), REVIEW_MAX_CHARS)
    if text:
        words.append(f'"{text}"')
    return " ".join(words)


def _category_words(category: object) -> str | None:
    """``electronics.smartphone`` -> ``electronics smartphone``."""
    if not isinstance(category, str):
        return None
    return category.replace(".", " ").replace("_", " ")


def _clean(value: object, limit: int) -> str:
    """Whitespace-normalised text, cut at a word boundary to at most ``limit`` characters."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip()


def _price(price: float) -> str:
    if price >= 10:
        return f"{price:.0f}"
    return f"{price:.2f}".rstrip("0").rstrip(".")
