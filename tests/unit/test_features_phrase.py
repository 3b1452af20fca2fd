"""event_phrase: no time in it, the price exact, bucketed or left out; the window text's words."""

from __future__ import annotations

import pytest

from worker.features import build_text
from worker.features.phrase import event_phrase, price_bucket
from worker.features.text import SEPARATOR

T0 = 1_570_000_000_000

PHONE = {"id": "p1", "category": "electronics.smartphone", "brand": "apple", "price": 1081.98}
SOFA = {"id": "p2", "title": "Oslo  sofa", "category": "furniture.living_room.sofa",
        "brand": "ikea", "price": 543.1, "currency": "EUR"}


def ev(event_type: str, ts: int, **fields: object) -> dict:
    return {"event_id": f"e{ts}", "user_id": "u1", "event_type": event_type, "ts": ts, **fields}


@pytest.mark.parametrize("price", ["bucket", "none", "exact"])
def test_events_differing_only_in_time_have_one_phrase(price: str) -> None:
    early = ev("view", T0, product=PHONE, session_id="s1")
    late = ev("view", T0 + 3 * 86_400_000, product=PHONE, session_id="s1")
    assert event_phrase(early, price=price) == event_phrase(late, price=price)
    assert "ago" not in event_phrase(late, price=price)


def test_price_modes() -> None:
    sofa = ev("add_to_cart", T0, product=SOFA)
    assert event_phrase(sofa) == \
        "added to cart Oslo sofa, furniture living room sofa, ikea, price 500-1000 EUR"
    assert event_phrase(sofa, price="none") == \
        "added to cart Oslo sofa, furniture living room sofa, ikea"
    assert event_phrase(sofa, price="exact") == \
        "added to cart Oslo sofa, furniture living room sofa, ikea, price 543 EUR"
    with pytest.raises(ValueError, match="price must be one of"):
        event_phrase(sofa, price="rounded")  # type: ignore[arg-type]


def test_prices_in_one_bucket_share_a_phrase_and_other_buckets_differ() -> None:
    def view(price: float) -> dict:
        return ev("view", T0, product={**PHONE, "price": price})

    assert event_phrase(view(1081.98)) == event_phrase(view(1999.99))
    assert event_phrase(view(999.0)) != event_phrase(view(1000.0))
    assert event_phrase(view(19.0)) != event_phrase(view(250.0))
    assert event_phrase(view(999.0), price="none") == event_phrase(view(1000.0), price="none")


@pytest.mark.parametrize(("price", "band"), [
    (0, "0"), (0.4, "under 1"), (1, "1-2"), (1.99, "1-2"), (2, "2-5"), (4.99, "2-5"),
    (5, "5-10"), (9.999, "5-10"), (10, "10-20"), (100, "100-200"), (999.99, "500-1000"),
    (1000, "1000-2000"), (1e6, "1000000-2000000"), (0.99999, "under 1"),
])
def test_price_bucket_edges(price: float, band: str) -> None:
    assert price_bucket(price) == band


def test_price_bucket_is_monotone_over_a_fine_grid() -> None:
    seen: list[str] = []
    for cents in range(0, 500_000, 7):
        band = price_bucket(cents / 100)
        if not seen or seen[-1] != band:
            assert band not in seen  # each band is one interval
            seen.append(band)
    assert seen[:5] == ["0", "under 1", "1-2", "2-5", "5-10"]


def test_the_window_text_is_the_exact_phrases_with_ages() -> None:
    w = [ev("view", T0, product=PHONE), ev("search", T0 + 30_000, query=" sofa  grey "),
         ev("view", T0 + 150_000, product=SOFA)]
    parts = build_text(w, max_chars=1000).split(SEPARATOR)
    assert [p.split(": ", 1)[1] for p in parts] == \
        [event_phrase(e, price="exact") for e in reversed(w)]


def test_events_without_product_or_with_odd_prices() -> None:
    assert event_phrase(ev("search", T0, query="  galaxy\ta50 ")) == 'searched "galaxy a50"'
    assert event_phrase(ev("view", T0, product={"price": True})) == "viewed a product"
    assert event_phrase(ev("view", T0, product={"price": -1})) == "viewed a product"
    assert event_phrase(ev("wish_list", T0)) == "wish list"
    assert event_phrase(ev("view", T0, product={"price": float("inf")})) == "viewed a product"
