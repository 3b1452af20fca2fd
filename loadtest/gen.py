"""Synthetic click events for load tests: Zipf-skewed users, products from real REES46 rows.

Pure and deterministic for a seed (no wall clock, no I/O except reading the catalogue
file). ``make_events`` returns normalised-looking click events ready for ``orjson.dumps``;
every one of them is valid against ``schemas/click-event.v1.json``.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.events import format_ts, parse_event

# REES46 has no titles: a product's title is its brand and the last words of its category.
_ROOT = Path(__file__).resolve().parents[1]
CATALOG_CANDIDATES = (  # the shared dev slice next to the checkout or in it, else the sample
    _ROOT.parent / "shared" / "data" / "rees46" / "events-dev.csv",
    _ROOT / "shared" / "data" / "rees46" / "events-dev.csv",
    _ROOT / "worker" / "data" / "sample-rees46.csv",
)

# Event mix of an engaged shop's clickstream (REES46 itself only has view/cart/purchase).
EVENT_MIX = (
    ("view", 78),
    ("search", 6),
    ("add_to_cart", 8),
    ("remove_from_cart", 2),
    ("purchase", 3),
    ("review", 3),
)
DEVICES = ("mobile", "desktop", "tablet")
REVIEWS = (
    "works fine, fast delivery",
    "broke after a week",
    "great value for the price",
    "not as described, returning it",
    "exactly what I needed",
)


class ZipfSampler:
    """Draws ranks ``0..n-1`` with ``P(k) ∝ 1 / (k + 1) ** s`` (rank 0 is the most active).

    Inverse-CDF sampling on a precomputed cumulative table: O(log n) per draw.
    """

    def __init__(self, n: int, s: float, *, rng: random.Random) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if s < 0:
            raise ValueError(f"s must be >= 0, got {s}")
        self.n = n
        self.s = s
        self._rng = rng
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        self._cdf = list(itertools.accumulate(weights))
        self._total = self._cdf[-1]

    def probability(self, k: int) -> float:
        """Exact probability of rank ``k``."""
        prev = self._cdf[k - 1] if k > 0 else 0.0
        return (self._cdf[k] - prev) / self._total

    def __call__(self) -> int:
        u = self._rng.random() * self._total
        return min(self.n - 1, bisect.bisect_right(self._cdf, u))


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    title: str
    category: str | None
    brand: str | None
    price: float | None


def load_catalog(path: Path | None = None, *, limit: int = 5000) -> list[Product]:
    """Distinct products of a REES46 CSV (the shared dev slice, else the bundled sample)."""
    if path is None:
        path = next(p for p in CATALOG_CANDIDATES if p.exists())
    seen: dict[str, Product] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            pid = row["product_id"]
            if not pid or pid in seen:
                continue
            category = row["category_code"] or None
            brand = row["brand"] or None
            leaf = " ".join(category.split(".")[-2:]).replace("_", " ") if category else "item"
            title = f"{brand or 'generic'} {leaf} {pid[-4:]}"
            price = float(row["price"]) if row["price"] else None
            seen[pid] = Product(pid, title, category, brand, price)
            if len(seen) >= limit:
                break
    if not seen:
        raise ValueError(f"{path}: no products")
    return list(seen.values())


def make_events(
    n: int,
    *,
    users: int,
    zipf_s: float,
    catalog: list[Product],
    seed: int = 5,
    start_ms: int = 1_700_000_000_000,
    step_ms: int = 50,
    prefix: str = "lt",
) -> list[dict]:
    """``n`` click events, users drawn by Zipf(``zipf_s``) over ``users`` ids, event time
    increasing by ``step_ms`` per event. Each user mostly browses one category."""
    rng = random.Random(seed)
    draw_user = ZipfSampler(users, zipf_s, rng=rng)
    types, weights = zip(*EVENT_MIX, strict=True)
    by_category: dict[str | None, list[Product]] = {}
    for p in catalog:
        by_category.setdefault(p.category, []).append(p)
    categories = sorted(by_category, key=lambda c: c or "")
    homes: dict[int, list[Product]] = {}  # a user's home category is stable
    events = []
    for i in range(n):
        u = draw_user()
        home = homes.get(u)
        if home is None:
            pick = random.Random(f"{seed}-{u}").randrange(len(categories))
            home = homes[u] = by_category[categories[pick]]
        product = rng.choice(home) if rng.random() < 0.7 else rng.choice(catalog)
        etype = rng.choices(types, weights)[0]
        ev: dict = {
            "event_id": f"{prefix}-{seed}-{i}",
            "user_id": f"u{u}",
            "event_type": etype,
            "ts": format_ts(start_ms + i * step_ms),
            "session_id": f"s{u}-{i // 2000}",
            "context": {"device": DEVICES[u % len(DEVICES)], "channel": "web"},
        }
        if etype == "search":
            ev["query"] = " ".join((product.category or "gift").split(".")[-2:]).replace("_", " ")
        else:
            ev["product"] = _product(product)
            if etype == "review":
                ev["review"] = {"rating": rng.randrange(1, 6), "text": rng.choice(REVIEWS)}
        events.append(ev)
    return events


def product_dict(p: Product) -> dict:
    """The event's ``product`` object of a catalogue product (also a catalogue line)."""
    return _product(p)


def _product(p: Product) -> dict:
    out: dict = {"id": p.id, "title": p.title}
    if p.category:
        out["category"] = p.category
    if p.brand:
        out["brand"] = p.brand
    if p.price is not None:
        out["price"] = p.price
        out["currency"] = "USD"
    return out


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive chunks of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def by_user(events: Iterable[dict]) -> dict[str, list[dict]]:
    """Generated events as one worker batch hands them to the window store: normalised by
    ``parse_event`` (``ts`` in epoch ms), grouped by user in order, a repeated ``event_id``
    of a user counted once."""
    users: dict[str, dict[str, dict]] = {}
    for ev in events:
        seen = users.setdefault(ev["user_id"], {})
        if ev["event_id"] not in seen:
            seen[ev["event_id"]] = parse_event(orjson.dumps(ev), max_bytes=1 << 20)
    return {user: list(evs.values()) for user, evs in users.items()}


def replay_stream(events: Iterable[dict], n: int, *, prefix: str = "rp") -> list[dict]:
    """``n`` events from a recorded stream (normalised events, ``ts`` in epoch ms), replayed as
    a longer stream: cycle ``k`` repeats the recording with event ids ``<prefix>-<k>-<id>`` and
    times shifted by ``k`` x (its span + 1 s), users unchanged. Events are in event-time order;
    ``ts`` is written as RFC 3339 (as producers send it)."""
    recorded = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    if not recorded:
        raise ValueError("no events to replay")
    span = recorded[-1]["ts"] - recorded[0]["ts"] + 1000
    out: list[dict] = []
    for k in itertools.count():
        for e in recorded:
            if len(out) >= n:
                return out
            out.append({**e, "event_id": f"{prefix}-{k}-{e['event_id']}",
                        "ts": format_ts(e["ts"] + k * span)})
    return out
