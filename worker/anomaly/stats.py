"""Running robust price statistics per category: median and MAD of log prices.

Each category keeps its last ``capacity`` prices (a sliding sample of events, oldest
dropped first) and the number of prices ever seen. Median and MAD are exact over that
sample, which makes them an approximation of the running median that follows drift, costs
O(capacity) memory per category and serialises to a small dict. In the worker the sample
lives in Redis (a sorted set per category, newest ``capacity`` by event time, read and
written in the same round trip as the windows: :mod:`worker.anomaly.state`) and
is rebuilt per batch with :meth:`CategoryStats.from_logs`.

The sample is weighted by popularity (one entry per view, cart or purchase), like the
purchases it judges. Its trap: a category whose recent events are mostly one product gets
a tiny MAD, and ordinary products of it would look like outliers; the detector's MAD floor
(``price_min_mad_log``) guards against that. A bot viewing one product thousands of times
can fill a category's sample the same way. One entry per product instead would find fewer
injected outliers and score clean purchases higher on REES46.

Prices are compared on the natural log of ``max(price, PRICE_FLOOR)``: prices within a
category spread multiplicatively, and a floor keeps free items finite.

A purchase is judged against the sample *before* the
batch it arrives in (the caller updates the statistics after detection).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from worker.errors import ConfigError
from worker.features.window import by_event_time

__all__ = ["MAD_SCALE", "PRICE_FLOOR", "CategoryStats", "log_price", "update_category_stats"]

PRICE_FLOOR = 0.01
MAD_SCALE = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal distribution
PRICED_TYPES = frozenset({"view", "add_to_cart", "purchase"})
_FORMAT = 1


def log_price(price: float) -> float:
    return math.log(max(float(price), PRICE_FLOOR))


class CategoryStats:
    """Median and MAD of the last ``capacity`` log prices of one category."""

    __slots__ = ("_cache", "capacity", "count", "_logs")

    def __init__(self, capacity: int = 200) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self.count = 0  # prices ever added (the sample holds the last min(count, capacity))
        self._logs: deque[float] = deque(maxlen=capacity)
        self._cache: tuple[float, float] | None = None

    def __len__(self) -> int:
        """Prices in the sample (what the median and MAD are computed over)."""
        return len(self._logs)

    def __repr__(self) -> str:
        return f"CategoryStats(samples={len(self)}, count={self.count}, capacity={self.capacity})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoryStats):
            return NotImplemented
        return (self.capacity, self.count, list(self._logs)) == (
            other.capacity, other.count, list(other._logs))

    def add(self, price: float) -> None:
        self._logs.append(log_price(price))
        self.count += 1
        self._cache = None

    def median_mad(self) -> tuple[float, float]:
        """``(median, MAD)`` of the sampled log prices; raises ValueError when empty."""
        if not self._logs:
            raise ValueError("no prices yet")
        if self._cache is None:
            xs = sorted(self._logs)
            med = _median(xs)
            self._cache = (med, _median(sorted(abs(x - med) for x in xs)))
        return self._cache

    def median_price(self) -> float:
        return math.exp(self.median_mad()[0])

    def robust_z(self, price: float, *, min_mad: float) -> float:
        """``|ln(price) - median| / (1.4826 * max(MAD, min_mad))``, signed: negative below."""
        med, mad = self.median_mad()
        return (log_price(price) - med) / (MAD_SCALE * max(mad, min_mad))

    @classmethod
    def from_logs(cls, logs: Iterable[float], capacity: int) -> CategoryStats:
        """A sample of log prices as the window store keeps it (the newest ``capacity``)."""
        out = cls(capacity)
        out._logs.extend(logs)
        out.count = len(out._logs)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` restores an equal object."""
        return {"v": _FORMAT, "capacity": self.capacity, "count": self.count,
                "logs": list(self._logs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryStats:
        try:
            if data.get("v") != _FORMAT:
                raise ValueError(f"unknown format {data.get('v')!r}")
            out = cls(int(data["capacity"]))
            logs = [float(x) for x in data["logs"]]
            count = int(data["count"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad category statistics {str(data)[:100]!r}: {exc}") from None
        if (count < len(logs) or len(logs) > out.capacity
                or not all(math.isfinite(x) for x in logs)):
            raise ConfigError(f"bad category statistics: {len(logs)} prices, count {count}, "
                              f"capacity {out.capacity}, or a non-finite value")
        out._logs.extend(logs)
        out.count = count
        return out


def update_category_stats(stats: MutableMapping[str, CategoryStats], events: Iterable[dict],
                          *, capacity: int) -> set[str]:
    """Add the price of every priced view, cart and purchase in ``events`` to its category's
    statistics (created with ``capacity`` when new); return the categories touched.

    Events are added in ``(ts, event_id)`` order, so the result does not depend on the order
    they came in.
    """
    touched: set[str] = set()
    for event in by_event_time(events):
        if event.get("event_type") not in PRICED_TYPES:
            continue
        product = event.get("product") or {}
        category, price = product.get("category"), product.get("price")
        if not category or price is None:
            continue
        entry = stats.get(category)
        if entry is None:
            entry = stats[category] = CategoryStats(capacity)
        entry.add(price)
        touched.add(category)
    return touched


def _median(xs: list[float]) -> float:
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2.0
