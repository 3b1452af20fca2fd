"""Inject labelled anomalies into a real clickstream, for measuring the anomaly detectors.

    python -m loadtest.inject_anomalies ../shared/data/rees46/events-dev.csv --format rees46 \
        --out /tmp/anom/events.jsonl --labels /tmp/anom/labels.json --seed 0 [--per-kind 100]

Reads the clickstream (REES46 CSV through the publishing adapter, or click-event JSON
Lines), adds ``per_kind`` anomalies of each kind at random points, half on new synthetic
users and half on existing users (next to one of their real events), and writes every event
as click-event v1 JSON Lines sorted by ``(ts, event_id)``, plus a labels file. The same input
and seed give byte-identical outputs. Clean events keep their ids; injected ids are uuid5 of
the seed, the kind and their position.

What is injected (ranges in :class:`InjectConfig`, recorded in the labels file):

* ``purchase_velocity``: a burst of 6..50 purchases of catalogue products spread over
  30 s..8 min, about half of them right after a view of the product;
* ``bot_cadence``: 20..80 events (90 % views, 10 % add-to-cart) with either fast gaps
  (log-normal, median 50..300 ms) or regular gaps (a period of 1..8 s with +-0.5..2 % jitter);
* ``out_of_character_purchase``: a purchase of a product from a category the user has not
  looked at, 10 s..5 min after browsing-only activity (2..6 views in one category for a new
  user; a real view with no cart or purchase in the hour before, for an existing user);
* ``price_outlier``: a view and then a purchase of a real product of a well-populated
  category (>= 100 priced events) at a price 8..20 robust z away from the category's log-price
  median over the whole file, up or down, after the category's 50th priced event.

The labels file: ``by_kind`` (kind -> injected ``event_ids`` and ``user_ids``) and
``anomalies`` (one entry per injected anomaly: kind, user, new user or not, event ids,
parameters), with the seed, the source, counts and the injection ranges.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from worker.errors import BadEvent, ConfigError
from worker.events import format_ts, parse_event
from worker.events.adapters import read_jsonl, read_rees46
from worker.features.window import by_event_time, event_time_key

__all__ = ["KINDS", "InjectConfig", "inject", "main", "read_clean", "write_outputs"]

KINDS = ("purchase_velocity", "bot_cadence", "out_of_character_purchase", "price_outlier")
LABELS_FORMAT = "intent-worker-anomaly-labels/1"
# uuid5(NAMESPACE_URL, "https://intent-worker.dev/loadtest/inject_anomalies"); fixed forever.
INJECT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://intent-worker.dev/loadtest/inject_anomalies")
_SHORT = {"purchase_velocity": "burst", "bot_cadence": "bot",
          "out_of_character_purchase": "ooc", "price_outlier": "price"}
_MAD_SCALE = 1.4826
_HOUR_MS = 3_600_000
# Two anomalies on one existing user are kept this far apart (window span + cooldown + slack),
# so that one never hides another behind the cooldown.
_SEPARATION_MS = 2 * _HOUR_MS
_HOST_TRIES = 20
DEFAULT_PER_KIND = 100
PRICE_CAP = 1_000_000.0  # injected prices stay within 0.01 .. PRICE_CAP


@dataclass(frozen=True, slots=True)
class InjectConfig:
    per_kind: int = DEFAULT_PER_KIND
    new_user_share: float = 0.5
    burst_purchases: tuple[int, int] = (6, 50)
    burst_span_s: tuple[float, float] = (30.0, 480.0)
    burst_view_share: float = 0.5
    bot_events: tuple[int, int] = (20, 80)
    bot_cart_share: float = 0.1
    bot_fast_median_gap_s: tuple[float, float] = (0.05, 0.3)
    bot_fast_sigma: float = 0.5
    bot_regular_period_s: tuple[float, float] = (1.0, 8.0)
    bot_regular_jitter: tuple[float, float] = (0.005, 0.02)
    ooc_views: tuple[int, int] = (2, 6)
    ooc_view_gap_s: tuple[float, float] = (10.0, 90.0)
    ooc_delay_s: tuple[float, float] = (10.0, 300.0)
    price_z: tuple[float, float] = (8.0, 20.0)
    price_min_category_events: int = 100
    price_after_category_events: int = 50
    host_offset_s: tuple[float, float] = (0.0, 300.0)

    def __post_init__(self) -> None:
        if self.per_kind < 0:
            raise ConfigError(f"per_kind must be >= 0, got {self.per_kind}")
        if not 0.0 <= self.new_user_share <= 1.0:
            raise ConfigError(f"new_user_share must be in [0, 1], got {self.new_user_share}")


def read_clean(path: str | Path, fmt: str) -> list[dict]:
    """Normalised click events (``ts`` int epoch ms) of a REES46 CSV or JSON Lines file,
    validated like the worker does; lines the worker would dead-letter are skipped."""
    path = Path(path)
    if fmt == "rees46":
        raws: Iterable[bytes] = (orjson.dumps(e) for e in read_rees46(path))
    elif fmt == "jsonl":
        raws = read_jsonl(path)
    else:
        raise ConfigError(f"unknown format {fmt!r}, expected rees46 or jsonl")
    out: list[dict] = []
    seen: set[str] = set()
    for raw in raws:
        try:
            event = parse_event(raw, max_bytes=1 << 20)
        except BadEvent:
            continue
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            out.append(event)
    out.sort(key=event_time_key)
    if not out:
        raise ConfigError(f"{path}: no valid events")
    return out


def inject(clean: Sequence[dict], *, seed: int, config: InjectConfig | None = None
           ) -> tuple[list[dict], dict[str, Any]]:
    """``(events, labels)``: ``clean`` (normalised events) merged with the injected ones,
    sorted by ``(ts, event_id)``, and the labels. Deterministic in ``seed``."""
    cfg = config or InjectConfig()
    injector = _Injector(clean, seed=seed, cfg=cfg)
    anomalies = []
    for kind in KINDS:
        make = getattr(injector, f"_{_SHORT[kind]}")
        for i in range(cfg.per_kind):
            anomalies.append(make(i))
    injected = [e for a in anomalies for e in a.pop("_events")]
    events = by_event_time([*clean, *injected])
    by_kind: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        mine = [a for a in anomalies if a["kind"] == kind]
        by_kind[kind] = {"event_ids": [eid for a in mine for eid in a["event_ids"]],
                         "user_ids": sorted({a["user_id"] for a in mine})}
    labels = {
        "format": LABELS_FORMAT,
        "seed": seed,
        "clean_events": len(clean),
        "injected_events": len(injected),
        "config": asdict(cfg),
        "by_kind": by_kind,
        "anomalies": anomalies,
    }
    return events, labels


def write_outputs(events: Sequence[dict], labels: dict[str, Any], out: str | Path,
                  labels_path: str | Path) -> None:
    """Events as click-event v1 JSON Lines (``ts`` RFC 3339) and the labels as JSON."""
    with Path(out).open("wb") as fh:
        for event in events:
            fh.write(orjson.dumps({**event, "ts": format_ts(event["ts"])}))
            fh.write(b"\n")
    Path(labels_path).write_bytes(orjson.dumps(labels, option=orjson.OPT_INDENT_2) + b"\n")


class _Injector:
    def __init__(self, clean: Sequence[dict], *, seed: int, cfg: InjectConfig) -> None:
        if not clean:
            raise ConfigError("no clean events to inject into")
        self.cfg = cfg
        self.seed = seed
        self.rng = random.Random(seed)
        self.first_ts = clean[0]["ts"]
        self.last_ts = clean[-1]["ts"]
        self.products: dict[str, dict] = {}
        self.by_user: dict[str, list[dict]] = {}
        by_category: dict[str, list[str]] = {}
        priced: dict[str, list[dict]] = {}
        for e in clean:
            self.by_user.setdefault(e["user_id"], []).append(e)
            product = e.get("product")
            if not product or product.get("price") is None:
                continue
            if product["id"] not in self.products:
                self.products[product["id"]] = dict(product)
                if product.get("category"):
                    by_category.setdefault(product["category"], []).append(product["id"])
            if product.get("category"):
                priced.setdefault(product["category"], []).append(e)
        if not self.products:
            raise ConfigError("the clean events have no priced products to inject")
        self.product_ids = sorted(self.products)
        self.users = sorted(self.by_user)
        self.categories = {c: sorted(p) for c, p in sorted(by_category.items())}
        self.category_list = sorted(self.categories)
        self.price_categories = []
        for c, events in sorted(priced.items()):
            if len(events) >= cfg.price_min_category_events and c in self.categories:
                logs = [math.log(max(ev["product"]["price"], 0.01)) for ev in events]
                med = statistics.median(logs)
                mad = statistics.median(abs(x - med) for x in logs)
                start = events[min(cfg.price_after_category_events, len(events) - 1)]["ts"]
                mad = max(mad, 0.05)
                # the z a price can reach between the floor (0.01) and the cap (PRICE_CAP)
                reach = {1: (math.log(PRICE_CAP) - med) / (_MAD_SCALE * mad),
                         -1: (med - math.log(0.01)) / (_MAD_SCALE * mad)}
                if max(reach.values()) >= cfg.price_z[0]:
                    self.price_categories.append((c, med, mad, start, reach))
        self.ooc_hosts = self._ooc_hosts()
        self.claimed: dict[str, list[int]] = {}

    # -- helpers ----------------------------------------------------------------------
    def _id(self, kind: str, i: int, j: int) -> str:
        return str(uuid.uuid5(INJECT_NAMESPACE, f"{self.seed}/{kind}/{i}/{j}"))

    def _new_user(self, kind: str, i: int) -> str:
        return f"inj{self.seed}-{_SHORT[kind]}-{i:04d}"

    def _free(self, user: str, ts: int) -> bool:
        return all(abs(ts - t) >= _SEPARATION_MS for t in self.claimed.get(user, ()))

    def _host(self) -> tuple[str | None, int]:
        """``(existing user, ts)`` next to one of their real events, or ``(None, ts)``."""
        cfg, rng = self.cfg, self.rng
        offset = round(rng.uniform(*cfg.host_offset_s) * 1000)
        if rng.random() >= cfg.new_user_share:
            for _ in range(_HOST_TRIES):
                user = rng.choice(self.users)
                ts = rng.choice(self.by_user[user])["ts"] + offset
                if self._free(user, ts):
                    return user, ts
        return None, rng.randint(self.first_ts, self.last_ts)

    def _event(self, kind: str, i: int, j: int, user: str, etype: str, ts: int,
               product: dict, session: str) -> dict:
        return {"event_id": self._id(kind, i, j), "user_id": user, "event_type": etype,
                "ts": int(ts), "session_id": session, "product": dict(product)}

    def _anomaly(self, kind: str, i: int, user: str, new_user: bool, events: list[dict],
                 **details: Any) -> dict[str, Any]:
        events.sort(key=event_time_key)
        self.claimed.setdefault(user, []).append(events[0]["ts"])
        return {"id": f"{_SHORT[kind]}-{i:04d}", "kind": kind, "user_id": user,
                "new_user": new_user, "event_ids": [e["event_id"] for e in events],
                "start_ts": format_ts(events[0]["ts"]), "end_ts": format_ts(events[-1]["ts"]),
                "details": details, "_events": events}

    # -- kinds ------------------------------------------------------------------------
    def _burst(self, i: int) -> dict[str, Any]:
        kind, cfg, rng = "purchase_velocity", self.cfg, self.rng
        host, t0 = self._host()
        user = host or self._new_user(kind, i)
        session = f"inj{self.seed}-{_SHORT[kind]}-{i}"
        n = rng.randint(*cfg.burst_purchases)
        span_ms = rng.uniform(*cfg.burst_span_s) * 1000
        offsets = sorted([0.0] + [rng.uniform(0, span_ms) for _ in range(n - 1)])
        events, j = [], 0
        for off in offsets:
            product = self.products[rng.choice(self.product_ids)]
            ts = t0 + round(off)
            if rng.random() < cfg.burst_view_share:
                events.append(self._event(kind, i, j, user, "view",
                                          ts - rng.randint(1000, 5000), product, session))
                j += 1
            events.append(self._event(kind, i, j, user, "purchase", ts, product, session))
            j += 1
        spend = sum(e["product"]["price"] for e in events if e["event_type"] == "purchase")
        return self._anomaly(kind, i, user, host is None, events, purchases=n,
                             span_s=round(span_ms / 1000, 3), spend=round(spend, 2))

    def _bot(self, i: int) -> dict[str, Any]:
        kind, cfg, rng = "bot_cadence", self.cfg, self.rng
        host, t0 = self._host()
        user = host or self._new_user(kind, i)
        session = f"inj{self.seed}-{_SHORT[kind]}-{i}"
        n = rng.randint(*cfg.bot_events)
        if rng.random() < 0.5:
            style, median = "fast", rng.uniform(*cfg.bot_fast_median_gap_s)
            gaps = [rng.lognormvariate(math.log(median), cfg.bot_fast_sigma) for _ in range(n - 1)]
            params = {"median_gap_s": round(median, 4), "sigma": cfg.bot_fast_sigma}
        else:
            style = "regular"
            period = rng.uniform(*cfg.bot_regular_period_s)
            jitter = rng.uniform(*cfg.bot_regular_jitter)
            gaps = [period * (1 + rng.uniform(-jitter, jitter)) for _ in range(n - 1)]
            params = {"period_s": round(period, 4), "jitter": round(jitter, 4)}
        ts, events = float(t0), []
        for j in range(n):
            if j:
                ts += gaps[j - 1] * 1000
            etype = "add_to_cart" if rng.random() < cfg.bot_cart_share else "view"
            product = self.products[rng.choice(self.product_ids)]
            events.append(self._event(kind, i, j, user, etype, round(ts), product, session))
        return self._anomaly(kind, i, user, host is None, events, style=style, length=n, **params)

    def _ooc_hosts(self) -> list[tuple[str, int]]:
        """(user, index of a view) with no cart/purchase in the hour before that view."""
        out = []
        for user in self.users:
            events = self.by_user[user]
            busy = [e["ts"] for e in events
                    if e["event_type"] in ("add_to_cart", "remove_from_cart", "purchase")]
            for k, e in enumerate(events):
                if e["event_type"] != "view":
                    continue
                lo = bisect.bisect_left(busy, e["ts"] - _HOUR_MS)
                if lo < len(busy) and busy[lo] <= e["ts"] + round(self.cfg.ooc_delay_s[1] * 1000):
                    continue
                out.append((user, k))
        return out

    def _ooc(self, i: int) -> dict[str, Any]:
        kind, cfg, rng = "out_of_character_purchase", self.cfg, self.rng
        session = f"inj{self.seed}-{_SHORT[kind]}-{i}"
        delay = round(rng.uniform(*cfg.ooc_delay_s) * 1000)
        events: list[dict] = []
        host = None
        if rng.random() >= cfg.new_user_share and self.ooc_hosts:
            for _ in range(_HOST_TRIES):
                user, k = rng.choice(self.ooc_hosts)
                if self._free(user, self.by_user[user][k]["ts"] + delay):
                    host = user
                    break
        if host is None:
            user = self._new_user(kind, i)
            browsed = rng.choice([c for c in self.category_list if len(self.categories[c]) >= 3])
            ts = rng.randint(self.first_ts, self.last_ts)
            for j in range(rng.randint(*cfg.ooc_views)):
                if j:
                    ts += round(rng.uniform(*cfg.ooc_view_gap_s) * 1000)
                product = self.products[rng.choice(self.categories[browsed])]
                events.append(self._event(kind, i, j, user, "view", ts, product, session))
            seen_categories, seen_products = {browsed}, {e["product"]["id"] for e in events}
            t_buy = ts + delay
        else:
            user = host
            mine = self.by_user[host]
            t_buy = mine[k]["ts"] + delay
            recent = [e for e in mine if e["ts"] <= t_buy]
            seen_products = {(e.get("product") or {}).get("id") for e in mine}
            seen_categories = {(e.get("product") or {}).get("category") for e in recent
                               if e["ts"] >= t_buy - _HOUR_MS}
        choices = [c for c in self.category_list if c not in seen_categories]
        pid = None
        while pid is None or pid in seen_products:
            pid = rng.choice(self.categories[rng.choice(choices)])
        events.append(self._event(kind, i, len(events), user, "purchase", t_buy,
                                  self.products[pid], session))
        return self._anomaly(kind, i, user, host is None, events, product_id=pid,
                             category=self.products[pid]["category"],
                             delay_s=delay / 1000)

    def _price(self, i: int) -> dict[str, Any]:
        kind, cfg, rng = "price_outlier", self.cfg, self.rng
        if not self.price_categories:
            raise ConfigError(f"no category has >= {cfg.price_min_category_events} priced events")
        category, med, mad, start, reach = rng.choice(self.price_categories)
        t = rng.randint(start, max(start, self.last_ts))
        sign = rng.choice((1, -1))
        if reach[sign] < cfg.price_z[0]:
            sign = -sign  # the floor or the cap is in the way: go the other way
        z = rng.uniform(cfg.price_z[0], min(cfg.price_z[1], reach[sign]))
        price = _price_at(med, mad, z, sign)
        product = {**self.products[rng.choice(self.categories[category])], "price": price}
        host = None
        if rng.random() >= cfg.new_user_share:
            near = [u for u in self.users if self._free(u, t)
                    and any(t - 600_000 <= e["ts"] <= t for e in self.by_user[u])]
            host = rng.choice(near) if near else None
        user = host or self._new_user(kind, i)
        session = f"inj{self.seed}-{_SHORT[kind]}-{i}"
        events = [
            self._event(kind, i, 0, user, "view", t - rng.randint(5_000, 120_000), product,
                        session),
            self._event(kind, i, 1, user, "purchase", t, product, session),
        ]
        actual = (math.log(max(price, 0.01)) - med) / (_MAD_SCALE * mad)
        return self._anomaly(kind, i, user, host is None, events, category=category,
                             price=price, median_price=round(math.exp(med), 2),
                             file_robust_z=round(actual, 3))


def _price_at(med: float, mad: float, z: float, sign: int) -> float:
    price = math.exp(med + sign * z * _MAD_SCALE * mad)
    return round(min(max(price, 0.01), PRICE_CAP), 2)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.inject_anomalies",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path, help="clickstream file")
    ap.add_argument("--format", choices=("rees46", "jsonl"), default="rees46")
    ap.add_argument("--out", type=Path, required=True, help="merged click events (JSON Lines)")
    ap.add_argument("--labels", type=Path, required=True, help="labels file (JSON)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=DEFAULT_PER_KIND,
                    help="anomalies injected per kind (default %(default)s)")
    args = ap.parse_args(argv)
    try:
        clean = read_clean(args.input, args.format)
        events, labels = inject(clean, seed=args.seed, config=InjectConfig(per_kind=args.per_kind))
        labels["source"] = {"path": str(args.input), "format": args.format}
        write_outputs(events, labels, args.out, args.labels)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {k: len(v["event_ids"]) for k, v in labels["by_kind"].items()}
    print(f"{len(events)} events ({labels['clean_events']} clean, {labels['injected_events']} "
          f"injected: {counts}) -> {args.out}; labels -> {args.labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
