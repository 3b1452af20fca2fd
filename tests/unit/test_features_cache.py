"""EventCache: inputs built with the cache equal those built without it, window after window,
when windows share event dicts (as the Redis store's decoded events do)."""

from __future__ import annotations

import copy
import random

import pytest

from worker.features import EventCache, build_input
from worker.features.text import SEPARATOR

T0 = 1_570_000_000_000
PRODUCTS = [
    {"id": "p1", "category": "electronics.smartphone", "brand": "apple", "price": 1081.98},
    {"id": "p2", "title": "Oslo sofa", "category": "furniture.sofa", "price": 543.1,
     "currency": "EUR"},
    {"id": "p3", "price": 0},
    {"id": "p4", "category": "", "brand": "x"},
]
KINDS = ["view", "view", "view", "search", "add_to_cart", "remove_from_cart", "purchase",
         "review", "wishlist"]


def ev(user: str, i: int, ts: int, rng: random.Random) -> dict:
    kind = rng.choice(KINDS)
    e: dict = {"event_id": f"e{i}", "user_id": user, "event_type": kind, "ts": ts,
               "session_id": f"s{i // 7}"}
    if kind == "search":
        e["query"] = rng.choice(["grey sofa", "phone case " * 12])
    elif kind != "wishlist" or rng.random() < 0.5:
        e["product"] = rng.choice(PRODUCTS)
    if kind == "review":
        e["review"] = {"rating": rng.randrange(6), "text": "fine"}
    if rng.random() < 0.5:
        e["context"] = {"device": rng.choice(["mobile", "PC", "tv", " "])}
    return e


def fresh(window: list[dict]) -> list[dict]:
    return copy.deepcopy(window)


def assert_same(window: list[dict], cache: EventCache, max_chars: int = 400) -> None:
    got = build_input(window, max_chars=max_chars, cache=cache)
    want = build_input(fresh(window), max_chars=max_chars)
    assert (got.text, got.features) == (want.text, want.features)


def test_growing_windows_sharing_events_give_the_uncached_inputs() -> None:
    rng = random.Random(3)
    cache = EventCache(50)
    users = {u: [] for u in ("u1", "u2", "u3")}
    for i in range(400):
        user = rng.choice(list(users))
        window = users[user]
        ts = T0 + i * rng.choice([200, 5_000, 90_000, 4_000_000])
        # the same event_id for every user: a per-user content under a shared id
        window.append(ev(user, i % 40, ts, rng))
        del window[:-12]  # trimmed by count, as the store does
        assert_same(window, cache, max_chars=rng.choice([30, 400, 2000]))
    assert cache.hits > cache.misses > 0


def test_a_shared_event_gets_its_age_in_each_window() -> None:
    rng = random.Random(1)
    cache = EventCache(100)
    first = {"event_id": "a", "user_id": "u", "event_type": "view", "ts": T0,
             "product": PRODUCTS[1]}
    assert build_input([first], max_chars=1000, cache=cache).text.startswith("now: viewed Oslo")
    later = ev("u", 9, T0 + 150_000, rng)
    text = build_input([first, later], max_chars=1000, cache=cache).text
    assert text.split(SEPARATOR)[1] == "2 min ago: viewed Oslo sofa, furniture sofa, price 543 EUR"
    assert_same([first, later], cache)


def test_unsorted_windows_and_equal_times_sort_as_without_cache() -> None:
    rng = random.Random(5)
    cache = EventCache(100)
    events = [ev("u", i, T0 + (i // 2) * 1000, rng) for i in range(10)]
    for _ in range(20):
        window = rng.sample(events, rng.randrange(1, 11))
        assert_same(window, cache)


def test_dicts_freed_and_ids_reused_never_hit_stale_facts() -> None:
    """Fresh dicts every time, a tiny cache: ids of dropped entries come back for other
    events (CPython reuses them at once) and must miss."""
    rng = random.Random(7)
    cache = EventCache(1)
    for i in range(300):
        window = [ev("u", i * 3 + k, T0 + k * 60_000, rng) for k in range(3)]
        assert_same(window, cache)
    assert cache.misses > 0


def test_size_zero_caches_nothing() -> None:
    cache = EventCache(0)
    assert_same([ev("u", 1, T0, random.Random(0))], cache)
    assert cache.hits == cache.misses == 0
    with pytest.raises(ValueError):
        EventCache(-1)
