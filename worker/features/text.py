"""The window as text for the encoder: one short phrase per event, newest first.

Example (newest event first, ages relative to the newest event)::

    now: added to cart samsung galaxy a50, electronics smartphone, price 250 USD |
    2 min ago: searched "galaxy a50 case" |
    5 min ago: viewed electronics smartphone, apple, price 1082

The tokenizer truncates from the end, so a text longer than the token budget loses its
oldest events first; ``max_chars`` bounds the work before that.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.features.facts import EVENT, LATER, PHRASE, TS, window_facts

SEPARATOR = " | "
QUERY_MAX_CHARS = 80
REVIEW_MAX_CHARS = 160
TITLE_MAX_CHARS = 80
FIELD_MAX_CHARS = 40  # category, brand, currency

VERBS = {
    "view": "viewed",
    "search": "searched",
    "add_to_cart": "added to cart",
    "remove_from_cart": "removed from cart",
    "purchase": "purchased",
    "review": "reviewed",
}


def build_text(window: Sequence[dict], *, max_chars: int) -> str:
    """The window's events as phrases, newest first, at most ``max_chars`` characters.

    Events are added whole until the next one would not fit; the newest event is always
    there (cut to ``max_chars`` if it alone is longer). An empty window is a ValueError.
    """
    return facts_text(window_facts(window), max_chars=max_chars)


def facts_text(facts: Sequence[tuple], *, max_chars: int) -> str:
    """:func:`build_text` of a window's facts (:mod:`worker.features.facts`, oldest first);
    the phrase of each event that goes into the text is kept in its facts."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    newest_ts = facts[-1][TS]
    parts: list[str] = []
    used = 0
    for f in reversed(facts):
        later = f[LATER]
        phrase = later[PHRASE]
        if phrase is None:
            phrase = later[PHRASE] = event_phrase(f[EVENT])
        phrase = f"{_age(newest_ts - f[TS])}: {phrase}"
        cost = len(phrase) + (len(SEPARATOR) if parts else 0)
        if used + cost > max_chars:
            if not parts:
                parts.append(phrase[:max_chars].rstrip())
            break
        parts.append(phrase)
        used += cost
    return SEPARATOR.join(parts)


def event_phrase(event: dict) -> str:
    """One event as a short phrase, without its time cue."""
    event_type = event.get("event_type", "")
    verb = VERBS.get(event_type) or _clean(event_type.replace("_", " "), FIELD_MAX_CHARS)
    words = [verb or "event"]
    query = _clean(event.get("query"), QUERY_MAX_CHARS)
    if query:
        words.append(f'"{query}"')
    product = event.get("product")
    if product:
        words.append(_product(product))
    review = event.get("review")
    if review:
        words.append(_review(review))
    return " ".join(w for w in words if w)


def _product(product: dict) -> str:
    title = _clean(product.get("title"), TITLE_MAX_CHARS)
    category = _clean(_category_words(product.get("category")), FIELD_MAX_CHARS)
    brand = _clean(product.get("brand"), FIELD_MAX_CHARS)
    fields = [title or category or "a product"]
    if title and category:
        fields.append(category)
    if brand and brand.lower() not in fields[0].lower():
        fields.append(brand)
    price = product.get("price")
    if isinstance(price, int | float) and not isinstance(price, bool) and price >= 0:
        currency = _clean(product.get("currency"), FIELD_MAX_CHARS)
        fields.append(f"price {_price(float(price))}" + (f" {currency}" if currency else ""))
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


def _age(ms: int) -> str:
    """A coarse age relative to the newest event: ``now``, ``40 s ago``, ``3 min ago``, ``2 h ago``,
    ``3 d ago``."""
    seconds = ms // 1000
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
