"""A bounded cache in two generations, for values that are reused batch after batch.

Entries go into the newer generation. When it holds more than ``size`` (entries, or the sum
of their weights), it becomes the older generation and the previous older one is dropped. A
hit in the older generation copies the entry into the newer one, so whatever is still in use
survives the next turn. Cheaper than an LRU (no per-hit reordering), and bounded: at most two
generations of about ``size`` each. ``size=0`` turns the cache off (nothing is kept).

Not thread-safe. ``None`` is not a storable value (it means "missing").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Generations"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Generations(Generic[K, V]):
    """Two-generation cache of up to ``size`` per generation; see the module docstring.

    ``weight`` gives an entry's share of ``size`` (default: 1 per entry).
    """

    __slots__ = ("size", "hits", "misses", "_new", "_old", "_weight", "_used")

    def __init__(self, size: int, *, weight: Callable[[V], int] | None = None) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._weight = weight
        self._used = 0  # the newer generation's total weight (with a weight function)
        self.hits = 0  # keys found by get_many
        self.misses = 0  # keys not found by get_many

    def __len__(self) -> int:
        return len(self._new.keys() | self._old.keys())

    def get(self, key: K) -> V | None:
        value = self._new.get(key)
        if value is None and self.size:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def get_many(self, keys: Sequence[K], make: Callable[[list[Any]], Sequence[V]] | None = None,
                 items: Sequence[Any] | None = None) -> list[V | None]:
        """The value of each of ``keys``, in their order; counts :attr:`hits` and :attr:`misses`.

        A missing key gives ``None``, or, with ``make``, a value made and stored: ``make`` gets
        the ``items`` (default: the keys) at the missing positions, all in one call so that it
        can batch the work, and returns their values in that order."""
        new = self._new
        out = list(map(new.get, keys))
        absent = out.count(None)
        if not absent:
            self.hits += len(out)
            return out
        old = self._old
        weight = self._weight
        missing: list[int] = []
        i = -1
        for _ in range(absent):  # list.index finds them in C: windows miss only a few
            i = out.index(None, i + 1)
            value = old.get(keys[i])
            if value is None:
                missing.append(i)
                continue
            out[i] = new[keys[i]] = value
            if weight is not None:
                self._used += weight(value)
        self.hits += len(out) - len(missing)
        self.misses += len(missing)
        if missing and make is not None:
            source = keys if items is None else items
            made = make([source[i] for i in missing])
            if len(made) != len(missing):
                raise ValueError(f"make gave {len(made)} values for {len(missing)} keys")
            keep = self.size > 0
            for i, value in zip(missing, made, strict=False):  # lengths checked above
                out[i] = value
                if keep:
                    new[keys[i]] = value
                    if weight is not None:
                        self._used += weight(value)
        if (len(new) if weight is None else self._used) > self.size:
            self._turn()
        return out

    def put(self, key: K, value: V) -> None:
        if not self.size:
            return
        self._new[key] = value
        if self._weight is not None:
            self._used += self._weight(value)
        self._turn()

    def put_many(self, keys: Sequence[K], values: Sequence[V]) -> None:
        if not self.size:
            return
        new = self._new
        for key, value in zip(keys, values, strict=True):
            new[key] = value
        if self._weight is not None:
            self._used += sum(map(self._weight, values))
        self._turn()

    def drop(self, key: K) -> None:
        self._new.pop(key, None)
        self._old.pop(key, None)

    def _turn(self) -> None:
        used = len(self._new) if self._weight is None else self._used
        if used > self.size:
            self._old, self._new, self._used = self._new, {}, 0
