"""The window cache: tokens never repeat, two bounded generations, size 0 is off."""

from __future__ import annotations

from worker.windows.window_cache import WindowCache


def window(user: str, n: int) -> tuple[list[bytes], list[dict]]:
    events = [{"event_id": f"{user}-{i}", "user_id": user} for i in range(n)]
    return [e["event_id"].encode() for e in events], events


def test_tokens_are_unique_per_store_and_across_stores() -> None:
    a, b = WindowCache(10), WindowCache(10)
    tokens = [a.next_token() for _ in range(100)] + [b.next_token() for _ in range(100)]
    assert len(set(tokens)) == 200


def test_two_generations_bound_the_events_and_reuse_keeps_a_window() -> None:
    cache = WindowCache(10)
    for user in ("u1", "u2", "u3"):
        cache.put(user, "t", *window(user, 4))
    # u1 and u2 (8 events) then u3 (12 > 10): the newer generation became the older one
    assert all(cache.get(u) is not None for u in ("u1", "u2", "u3"))
    for user in ("u4", "u5", "u6"):
        cache.put(user, "t", *window(user, 4))
    assert cache.get("u1") is None  # two rotations later: dropped
    got = cache.get("u6")
    assert got is not None and list(got.events) == [f"u6-{i}".encode() for i in range(4)]
    cache.drop("u6")
    assert cache.get("u6") is None


def test_size_zero_caches_nothing() -> None:
    cache = WindowCache(0)
    cache.put("u1", "t", *window("u1", 3))
    assert cache.get("u1") is None
