"""build_text: newest first, deterministic, capped user text, truncation keeps the newest events."""

from __future__ import annotations

import random

import pytest

from worker.features import FEATURE_NAMES, ModelInput, build_input, build_text
from worker.features.phrase import QUERY_MAX_CHARS, REVIEW_MAX_CHARS
from worker.features.text import SEPARATOR

T0 = 1_570_000_000_000  # 2019-10-02T07:06:40Z, epoch ms


def ev(event_id: str, event_type: str, ts: int, **fields: object) -> dict:
    return {"event_id": event_id, "user_id": "u1", "event_type": event_type, "ts": ts, **fields}


PHONE = {"id": "p1", "category": "electronics.smartphone", "brand": "apple", "price": 1081.98}
SOFA = {"id": "p2", "title": "Oslo  sofa", "category": "furniture.living_room.sofa",
        "brand": "ikea", "price": 543.1, "currency": "EUR"}


def window() -> list[dict]:
    return [
        ev("e1", "view", T0, product=PHONE),
        ev("e2", "search", T0 + 30_000, query="  sofa\n\tgrey   3 seats "),
        ev("e3", "view", T0 + 150_000, product=SOFA),
        ev("e4", "add_to_cart", T0 + 3_750_000, product=SOFA, context={"device": "mobile"}),
    ]


def phrases(text: str) -> list[str]:
    return text.split(SEPARATOR)


def test_newest_first_with_time_cues() -> None:
    assert phrases(build_text(window(), max_chars=1000)) == [
        "now: added to cart Oslo sofa, furniture living room sofa, ikea, price 543 EUR",
        "1 h ago: viewed Oslo sofa, furniture living room sofa, ikea, price 543 EUR",
        '1 h ago: searched "sofa grey 3 seats"',
        "1 h ago: viewed electronics smartphone, apple, price 1082",
    ]


def test_time_cues_seconds_and_minutes() -> None:
    w = [ev("a", "view", T0, product=PHONE), ev("b", "view", T0 + 140_000, product=PHONE),
         ev("c", "view", T0 + 185_000, product=PHONE), ev("d", "view", T0 + 185_400, product=PHONE)]
    cues = [p.split(":")[0] for p in phrases(build_text(w, max_chars=1000))]
    assert cues == ["now", "now", "45 s ago", "3 min ago"]


def test_deterministic_and_independent_of_input_order() -> None:
    w = window()
    text = build_text(w, max_chars=1000)
    shuffled = w[:]
    random.Random(1).shuffle(shuffled)
    assert build_text(w, max_chars=1000) == text
    assert build_text(shuffled, max_chars=1000) == text


def test_product_fields() -> None:
    cheap = {"id": "p3", "title": "USB cable", "category": "electronics.accessories",
             "brand": "Anker", "price": 4.5, "currency": "USD"}
    text = build_text([ev("a", "purchase", T0, product=cheap)], max_chars=1000)
    assert text == "now: purchased USB cable, electronics accessories, Anker, price 4.5 USD"


def test_brand_left_out_when_in_title() -> None:
    product = {"id": "p", "title": "Apple iPhone 8", "brand": "apple", "price": 700}
    assert build_text([ev("a", "view", T0, product=product)], max_chars=1000) == (
        "now: viewed Apple iPhone 8, price 700")


def test_product_without_details() -> None:
    assert build_text([ev("a", "remove_from_cart", T0, product={"id": "p"})], max_chars=100) == (
        "now: removed from cart a product")


def test_search_query_normalised_and_capped() -> None:
    query = "red   running\nshoes " + "x" * 500
    text = build_text([ev("a", "search", T0, query=query)], max_chars=10_000)
    assert text.startswith('now: searched "red running shoes')
    quoted = text.split('"')[1]
    assert len(quoted) <= QUERY_MAX_CHARS
    assert "\n" not in text and "  " not in text


def test_review_rating_and_text_capped() -> None:
    review = {"rating": 4, "text": "Great\n\nphone,   fast delivery. " + "blah " * 200}
    text = build_text([ev("a", "review", T0, product=PHONE, review=review)], max_chars=10_000)
    assert text.startswith("now: reviewed electronics smartphone, apple, price 1082 rated 4 "
                           '"Great phone, fast delivery. blah')
    quoted = text.split('"')[1]
    assert len(quoted) <= REVIEW_MAX_CHARS
    assert build_text([ev("a", "review", T0, review={"rating": 3.5})], max_chars=100) == (
        "now: reviewed rated 3.5")


def test_truncation_keeps_the_newest_events_whole() -> None:
    w = [ev(f"e{i:02d}", "view", T0 + i * 60_000, product={**PHONE, "id": f"p{i}"})
         for i in range(40)]
    full = build_text(w, max_chars=100_000)
    assert len(phrases(full)) == 40
    short = build_text(w, max_chars=300)
    assert len(short) <= 300
    kept = phrases(short)
    assert kept == phrases(full)[: len(kept)]  # a prefix of whole phrases: the newest events
    assert kept[0].startswith("now: ") and 1 < len(kept) < 40
    # One more phrase would not have fit.
    assert len(short) + len(SEPARATOR) + len(phrases(full)[len(kept)]) > 300


def test_newest_event_alone_is_cut_to_max_chars() -> None:
    text = build_text([ev("a", "search", T0, query="word " * 30)], max_chars=20)
    assert text == 'now: searched "word'
    assert len(text) <= 20


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty window"):
        build_text([], max_chars=100)
    with pytest.raises(ValueError, match="max_chars"):
        build_text(window(), max_chars=0)


def test_build_input() -> None:
    item = build_input(window(), max_chars=1000)
    assert isinstance(item, ModelInput)
    assert item.text == build_text(window(), max_chars=1000)
    assert len(item.features) == len(FEATURE_NAMES)
    assert all(isinstance(x, float) for x in item.features)
    with pytest.raises(ValueError):
        build_input([], max_chars=100)
