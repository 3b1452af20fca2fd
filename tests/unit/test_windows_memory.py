"""MemoryWindowStore semantics on fixed event time (never the wall clock).

The same behaviours run against Redis, side by side with this store, in
tests/integration/test_windows_redis.py.
"""

from __future__ import annotations

import pytest

from worker.settings import load_settings
from worker.windows import MemoryWindowStore, WindowStore

T0 = 1_700_000_000_000  # fixed event time, epoch ms


def ev(event_id: str, ts: int, user: str = "u1", **extra: object) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": "view", "ts": ts, **extra}


def ids(window: list[dict]) -> list[str]:
    return [e["event_id"] for e in window]


def make(max_events: int = 100, span_ms: int = 3_600_000) -> MemoryWindowStore:
    return MemoryWindowStore(max_events=max_events, span_ms=span_ms, ttl_s=60)


def test_is_a_window_store() -> None:
    assert isinstance(make(), WindowStore)


async def test_out_of_order_arrival_is_ordered_by_event_time() -> None:
    store = make()
    out = await store.append({"u1": [ev("c", T0 + 30), ev("a", T0 + 10), ev("b", T0 + 20)]})
    assert ids(out["u1"]) == ["a", "b", "c"]
    out = await store.append({"u1": [ev("late", T0 + 15), ev("early", T0)]})
    assert ids(out["u1"]) == ["early", "a", "late", "b", "c"]


async def test_ties_are_ordered_by_event_id() -> None:
    store = make()
    out = await store.append({"u1": [ev("b", T0), ev("c", T0), ev("a", T0), ev("0", T0 + 1)]})
    assert ids(out["u1"]) == ["a", "b", "c", "0"]


async def test_count_bound_keeps_the_newest() -> None:
    store = make(max_events=3)
    out = await store.append({"u1": [ev(f"e{i}", T0 + i) for i in range(5)]})
    assert ids(out["u1"]) == ["e2", "e3", "e4"]
    # a tie at the boundary: the larger event_id counts as newer
    out = await store.append({"u1": [ev("z", T0 + 2), ev("a", T0 + 2)]})
    assert ids(out["u1"]) == ["z", "e3", "e4"]


async def test_span_bound_is_measured_back_from_the_newest_event() -> None:
    store = make(span_ms=1000)
    out = await store.append({"u1": [ev("a", T0), ev("b", T0 + 500), ev("c", T0 + 1000)]})
    assert ids(out["u1"]) == ["a", "b", "c"]  # exactly span_ms back is kept
    out = await store.append({"u1": [ev("d", T0 + 1001)]})
    assert ids(out["u1"]) == ["b", "c", "d"]
    out = await store.append({"u1": [ev("too_late", T0), ev("just_in", T0 + 1)]})
    assert ids(out["u1"]) == ["just_in", "b", "c", "d"]  # cutoff = newest - span = T0 + 1


async def test_redelivery_is_idempotent_first_write_wins() -> None:
    store = make()
    await store.append({"u1": [ev("a", T0, query="first"), ev("b", T0 + 1)]})
    out = await store.append(
        {"u1": [ev("a", T0 + 5, query="second"), ev("b", T0 + 1), ev("c", T0 + 2)]}
    )
    assert ids(out["u1"]) == ["a", "b", "c"]
    assert out["u1"][0] == ev("a", T0, query="first")


async def test_duplicates_within_one_batch_keep_the_first() -> None:
    store = make()
    out = await store.append({"u1": [ev("a", T0, query="one"), ev("a", T0, query="two")]})
    assert out["u1"] == [ev("a", T0, query="one")]


async def test_trimmed_event_redelivered_does_not_come_back() -> None:
    store = make(max_events=2)
    await store.append({"u1": [ev("a", T0), ev("b", T0 + 1), ev("c", T0 + 2)]})
    out = await store.append({"u1": [ev("a", T0)]})
    assert ids(out["u1"]) == ["b", "c"]


async def test_several_users_in_one_batch_are_independent() -> None:
    store = make(max_events=2)
    out = await store.append(
        {
            "u1": [ev("a", T0), ev("b", T0 + 1), ev("c", T0 + 2)],
            "u2": [ev("a", T0 + 9, user="u2")],  # same event_id, other user: not a duplicate
            "u3": [],
        }
    )
    assert set(out) == {"u1", "u2", "u3"}
    assert ids(out["u1"]) == ["b", "c"]
    assert out["u2"] == [ev("a", T0 + 9, user="u2")]
    assert out["u3"] == []


async def test_empty_batch_returns_nothing() -> None:
    assert await make().append({}) == {}


async def test_user_without_events_gets_the_current_window() -> None:
    store = make()
    await store.append({"u1": [ev("a", T0)]})
    assert ids((await store.append({"u1": []}))["u1"]) == ["a"]


async def test_returned_window_is_a_fresh_copy() -> None:
    store = make()
    out = await store.append({"u1": [ev("a", T0, product={"id": "p1"})]})
    out["u1"][0]["product"]["id"] = "mutated"
    out["u1"].clear()
    again = await store.append({"u1": []})
    assert again["u1"] == [ev("a", T0, product={"id": "p1"})]


async def test_forget_removes_the_user() -> None:
    store = make()
    await store.append({"u1": [ev("a", T0)], "u2": [ev("b", T0, user="u2")]})
    await store.forget("u1")
    await store.forget("nobody")
    out = await store.append({"u1": [], "u2": []})
    assert out == {"u1": [], "u2": [ev("b", T0, user="u2")]}


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "a", "user_id": "u1", "ts": "2024-01-01T00:00:00Z"},
        {"event_id": "a", "user_id": "u1", "ts": 1.5},
        {"event_id": "a", "user_id": "u1", "ts": True},
        {"event_id": "a", "user_id": "u1", "ts": 2**60},
        {"event_id": "", "user_id": "u1", "ts": T0},
        {"event_id": "a", "user_id": "someone-else", "ts": T0},
        {"user_id": "u1", "ts": T0},
    ],
)
async def test_bad_event_raises_and_writes_nothing(bad: dict) -> None:
    store = make()
    with pytest.raises(ValueError):
        await store.append({"u0": [ev("ok", T0, user="u0")], "u1": [ev("ok", T0), bad]})
    assert await store.append({"u0": [], "u1": []}) == {"u0": [], "u1": []}


async def test_async_with_and_from_settings() -> None:
    settings = load_settings(window_max_events=7, window_seconds=60, window_ttl_seconds=120)
    async with MemoryWindowStore.from_settings(settings) as store:
        await store.ping()
        assert (store.max_events, store.span_ms, store.ttl_s) == (7, 60_000, 120)


@pytest.mark.parametrize("kwargs", [{"max_events": 0}, {"span_ms": -1}, {"ttl_s": 0}])
def test_bad_limits_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MemoryWindowStore(**{"max_events": 1, "span_ms": 0, "ttl_s": 1, **kwargs})


def test_decoded_events_cache_reuses_payloads_and_stays_bounded() -> None:
    from worker.windows.codec import DecodedEvents, decode_window, encode_event, join_payloads

    def payload(i: int, user: str = "u1") -> bytes:
        event = {"event_id": f"e{i}", "ts": i, "user_id": user, "event_type": "view"}
        return encode_event(event, user)[2]

    cache = DecodedEvents(4)
    first = cache.window([payload(1), payload(2)], "u1")
    assert first == decode_window(join_payloads([payload(1), payload(2)]), "u1")
    again = cache.window([payload(1), payload(2), payload(3)], "u1")
    assert again[0] is first[0] and again[1] is first[1]  # decoded once
    assert [e["event_id"] for e in again] == ["e1", "e2", "e3"]
    assert (cache.hits, cache.misses) == (2, 3)
    # the same payload stored under another user is decoded for that user
    other = cache.window([payload(1, "u2")], "u2")
    assert other[0]["user_id"] == "u2" and first[0]["user_id"] == "u1"
    for i in range(100):
        cache.window([payload(i)], "u1")
    assert len(cache._cache) <= 2 * 5 + 1  # two generations, each at most size + 1
    off = DecodedEvents(0)
    assert off.window([payload(1)], "u1") == first[:1] and off.hits == 0
