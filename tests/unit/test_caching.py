"""Generations: the two-generation cache the decoded-event, window and facts caches share."""

from __future__ import annotations

import pytest

from worker.caching import Generations


def test_an_entry_in_use_survives_the_turn_and_an_unused_one_is_dropped() -> None:
    cache: Generations[str, int] = Generations(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)  # the newer generation holds 3 > 2: it becomes the older one
    assert cache.get("a") == 1  # from the older generation, copied into the newer one
    cache.put("d", 4)
    cache.put("e", 5)  # newer {a, d, e} > 2: turns; b and c were not used and are dropped
    assert [cache.get(k) for k in "abcde"] == [1, None, None, 4, 5]


def test_size_bounds_both_generations() -> None:
    cache: Generations[int, int] = Generations(5)
    for i in range(1000):
        cache.put(i, i)
        assert len(cache) <= 2 * 5 + 1


def test_weights_count_towards_the_size() -> None:
    cache: Generations[str, list[int]] = Generations(10, weight=len)
    cache.put("a", [0] * 6)
    cache.put("b", [0] * 6)  # 12 > 10: turns
    cache.put("c", [0] * 6)
    cache.put("d", [0] * 6)  # turns again: a and b are gone
    assert cache.get("a") is None and cache.get("c") is not None


def test_get_many_promotes_and_keeps_order() -> None:
    cache: Generations[str, int] = Generations(2)
    cache.put_many(["a", "b", "c"], [1, 2, 3])  # turns after the call
    assert cache.get_many(["c", "x", "a"]) == [3, None, 1]
    cache.put_many(["y", "z"], [8, 9])  # turns again: only what get_many used is left
    assert cache.get_many(["a", "b", "c"]) == [1, None, 3]


def test_size_zero_keeps_nothing_and_drop_forgets() -> None:
    off: Generations[str, int] = Generations(0)
    off.put("a", 1)
    off.put_many(["b"], [2])
    assert off.get("a") is None and off.get_many(["b"]) == [None] and len(off) == 0
    cache: Generations[str, int] = Generations(1)
    cache.put_many(["a", "b"], [1, 2])
    cache.drop("a")
    assert cache.get("a") is None and cache.get("b") == 2
    with pytest.raises(ValueError, match="size"):
        Generations(-1)


def test_get_many_makes_the_missing_values_in_one_call_and_counts() -> None:
    cache: Generations[str, str] = Generations(10)
    cache.put("a", "A")
    calls: list[list[str]] = []

    def make(items: list[str]) -> list[str]:
        calls.append(items)
        return [f"made {item}" for item in items]

    assert cache.get_many(["x", "a", "y"], make) == ["made x", "A", "made y"]
    assert calls == [["x", "y"]] and cache.get("y") == "made y"  # stored
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.get_many(["a", "x"], make, ["item a", "item x"]) == ["A", "made x"]
    assert len(calls) == 1 and (cache.hits, cache.misses) == (3, 2)
    assert cache.get_many(["z"], make, ["item z"]) == ["made item z"]
    off: Generations[str, str] = Generations(0)
    assert off.get_many(["x"], make) == ["made x"] and off.get("x") is None
