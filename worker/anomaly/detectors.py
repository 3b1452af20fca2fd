"""The four anomaly detectors: pure functions of a user's window and fixed state.

Every detector takes the user's window (normalised events, oldest first, ``ts`` in epoch
ms; see docs/contracts.md), the batch's events of that user (``new_events``) and the state
it needs, and returns a list of :class:`~worker.anomaly.alerts.Alert`. None reads a clock:
time is event time. Only a stretch of the window holding a new event (one of
``new_events`` still in the window) can fire, and the window is re-sorted defensively.

**Which events fire an alert is canonical.** A detector scans the window in event-time
order and fires at the *first* point where its rule holds over events that include a new
one, looking only at the window up to that point. A burst therefore gets the same
``alert_id`` whether it arrives in one batch or one event at a time (or out of order), and
a redelivered batch gets the same id again. Later events of the same burst make further
candidates; :mod:`worker.anomaly.cooldown` drops them.

Cost: a detector returns at once when the batch brings nothing it looks at (velocity,
out-of-character and price need a new purchase). :func:`detect_all` sorts the window once
for all four (docs/benchmarks.md has the cost per event).

Severity, per kind:

* ``purchase_velocity``: ``high`` when both the count and the spend threshold are crossed,
  else ``medium``. Evidence: the purchases in the span ending at the firing purchase.
* ``bot_cadence``: ``high`` when the events examined include a purchase (automated
  buying), ``medium`` with an add-to-cart, else ``low`` (scraping). Evidence: those events.
* ``out_of_character_purchase``: ``high`` when the user had not looked at the product's
  category either, else ``medium``. Evidence: the purchase; ``model`` names the model.
* ``price_outlier``: ``high`` when the robust z is at least twice the threshold, else
  ``medium``. Evidence: the purchase and the category's statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.anomaly.alerts import Alert, ModelRef, alert_id
from worker.anomaly.config import DetectorConfig
from worker.anomaly.stats import CategoryStats
from worker.features.window import event_time_key

__all__ = [
    "OocCandidate", "detect_all", "detect_bot_cadence", "detect_out_of_character",
    "detect_price_outlier", "detect_purchase_velocity", "ooc_candidates",
]

# Events that show the user knew a product: anything about it except a review.
_TOUCHES = frozenset({"view", "add_to_cart", "remove_from_cart", "purchase"})


@dataclass(frozen=True, slots=True)
class OocCandidate:
    """A new purchase that is out of character unless its prior score is high."""

    purchase: dict
    prior_window: tuple[dict, ...]  # the window's events before the purchase, oldest first
    category_seen: bool  # the user had looked at the product's category before


class _Batch:
    """One user's window in ``(ts, event_id)`` order and which of its events are new."""

    __slots__ = ("new", "purchases", "win")

    def __init__(self, window: Sequence[dict], new_events: Sequence[dict]) -> None:
        win = list(window)
        for a, b in zip(win, win[1:], strict=False):
            ta, tb = a["ts"], b["ts"]
            if ta > tb or (ta == tb and a["event_id"] > b["event_id"]):
                win.sort(key=event_time_key)
                break
        self.win = win
        self.new = {e["event_id"] for e in new_events}
        # positions of the new purchases that are still in the window
        self.purchases: list[int] = []
        if any(e["event_type"] == "purchase" for e in new_events):
            self.purchases = [i for i, e in enumerate(win)
                              if e["event_type"] == "purchase" and e["event_id"] in self.new]


def detect_purchase_velocity(window: Sequence[dict], new_events: Sequence[dict],
                             config: DetectorConfig) -> list[Alert]:
    """At most one alert: at the first purchase ``p`` of the window where the purchases in
    the span ``(p.ts - velocity_span_s, p.ts]``, one of them new, reach
    ``velocity_min_purchases``, or at least two of them have prices summing to
    ``velocity_min_spend`` (one dear purchase is not velocity; the price outlier detector
    judges single prices). A late purchase can so complete a burst in the past."""
    return _velocity(_Batch(window, new_events), config)


def detect_bot_cadence(window: Sequence[dict], new_events: Sequence[dict],
                       config: DetectorConfig) -> list[Alert]:
    """At most one alert: at the first run of ``bot_events`` consecutive events of the
    window, one of them new, whose gaps have a median below ``bot_max_median_gap_s``, or a
    coefficient of variation below ``bot_max_cv`` and a mean below ``bot_max_mean_gap_s``."""
    return _bot(_Batch(window, new_events), config)


def ooc_candidates(window: Sequence[dict], new_events: Sequence[dict],
                   config: DetectorConfig) -> list[OocCandidate]:
    """The new purchases that could be out of character whatever the score: no earlier
    (or same-time) event of the window touched the product, and at least
    ``ooc_min_prior_events`` (and at least one) events precede it. Cheap: the caller scores
    only the ``prior_window`` of these (usually none) for :func:`detect_out_of_character`."""
    return _ooc_candidates(_Batch(window, new_events), config)


def detect_out_of_character(window: Sequence[dict], new_events: Sequence[dict], *,
                            prior_scores: Mapping[str, float | None], model: ModelRef | None,
                            config: DetectorConfig) -> list[Alert]:
    """One alert per candidate purchase (see :func:`ooc_candidates`) whose prior score is
    below ``ooc_max_score``.

    ``prior_scores`` maps a candidate purchase's ``event_id`` to the user's intent score just
    before it: the score of its ``prior_window`` (which is the previous batch's score of the
    user when that window holds no event of this batch). A missing or None score never
    fires. ``model`` is the model that produced the scores (None for a stand-in).
    """
    return _ooc(_Batch(window, new_events), prior_scores, model, config)


def detect_price_outlier(window: Sequence[dict], new_events: Sequence[dict], *,
                         stats: Mapping[str, CategoryStats],
                         config: DetectorConfig) -> list[Alert]:
    """One alert per new purchase whose price has a robust z above ``price_max_robust_z``
    against its category's statistics (as they stood before this batch), when those hold
    at least ``price_min_samples`` prices. Purchases without category or price are skipped."""
    return _price(_Batch(window, new_events), stats, config)


def detect_all(window: Sequence[dict], new_events: Sequence[dict], *, config: DetectorConfig,
               stats: Mapping[str, CategoryStats], prior_scores: Mapping[str, float | None],
               model: ModelRef | None) -> list[Alert]:
    """Every detector on one user's window; alerts in ``(event_ts, kind, alert_id)`` order.
    Cooldown is not applied here (see :class:`worker.anomaly.cooldown.Cooldown`)."""
    batch = _Batch(window, new_events)
    alerts = [*_velocity(batch, config), *_bot(batch, config),
              *_ooc(batch, prior_scores, model, config), *_price(batch, stats, config)]
    alerts.sort(key=lambda a: (a.event_ts, a.kind, a.alert_id))
    return alerts


# -- the detectors on a prepared batch -------------------------------------------------------

def _velocity(batch: _Batch, config: DetectorConfig) -> list[Alert]:
    if not batch.purchases:
        return []
    purchases = [e for e in batch.win if e["event_type"] == "purchase"]
    span_ms = config.velocity_span_s * 1000.0
    lo = 0
    last_new = -1  # index of the latest new purchase so far
    for i, p in enumerate(purchases):
        while p["ts"] - purchases[lo]["ts"] >= span_ms:
            lo += 1
        if p["event_id"] in batch.new:
            last_new = i
        if last_new < lo:
            continue  # nothing new in this span: judged in an earlier batch
        burst = purchases[lo:i + 1]
        spend = sum(_price_of(e) for e in burst)
        by_count = len(burst) >= config.velocity_min_purchases
        by_spend = len(burst) >= 2 and spend >= config.velocity_min_spend
        if not (by_count or by_spend):
            continue
        trigger = "count_and_spend" if by_count and by_spend else "count" if by_count else "spend"
        evidence = {
            "event_ids": [e["event_id"] for e in burst],
            "purchases": len(burst),
            "spend": round(spend, 2),
            "span_s": (burst[-1]["ts"] - burst[0]["ts"]) / 1000.0,
            "trigger": trigger,
            "thresholds": {"min_purchases": config.velocity_min_purchases,
                           "min_spend": config.velocity_min_spend,
                           "span_s": config.velocity_span_s},
        }
        return [_alert("purchase_velocity", p, evidence,
                       "high" if trigger == "count_and_spend" else "medium")]
    return []


def _bot(batch: _Batch, config: DetectorConfig) -> list[Alert]:
    win, k = batch.win, config.bot_events
    last_new = -1  # position of the latest new event so far
    for i, e in enumerate(win):
        if e["event_id"] in batch.new:
            last_new = i
        if i < k - 1 or last_new < i - k + 1:
            continue  # fewer than k events, or nothing new among them
        events = win[i - k + 1:i + 1]
        gaps = sorted((events[j + 1]["ts"] - events[j]["ts"]) / 1000.0 for j in range(k - 1))
        n = len(gaps)
        median = gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2.0
        mean = sum(gaps) / n
        cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / n) / mean if mean > 0 else 0.0
        short = median < config.bot_max_median_gap_s
        regular = cv < config.bot_max_cv and mean < config.bot_max_mean_gap_s
        if not (short or regular):
            continue
        purchases = sum(e["event_type"] == "purchase" for e in events)
        carts = sum(e["event_type"] == "add_to_cart" for e in events)
        evidence = {
            "event_ids": [e["event_id"] for e in events],
            "events": len(events),
            "median_gap_s": round(median, 6),
            "mean_gap_s": round(mean, 6),
            "cv": round(cv, 6),
            "purchases": purchases,
            "carts": carts,
            "trigger": ("short_and_regular_gaps" if short and regular
                        else "short_gaps" if short else "regular_gaps"),
            "thresholds": {"events": k, "max_median_gap_s": config.bot_max_median_gap_s,
                           "max_cv": config.bot_max_cv,
                           "max_mean_gap_s": config.bot_max_mean_gap_s},
        }
        severity = "high" if purchases else "medium" if carts else "low"
        return [_alert("bot_cadence", win[i], evidence, severity)]
    return []


def _ooc_candidates(batch: _Batch, config: DetectorConfig) -> list[OocCandidate]:
    win, out = batch.win, []
    for i in batch.purchases:
        if i < max(config.ooc_min_prior_events, 1):
            continue
        p = win[i]
        product = p.get("product") or {}
        pid, category = product.get("id"), product.get("category")
        known = category_seen = False
        for j, e in enumerate(win):
            if j == i or e["ts"] > p["ts"]:
                continue
            other = e.get("product") or {}
            if e["event_type"] in _TOUCHES and other.get("id") == pid:
                known = True
                break
            if category is not None and other.get("category") == category:
                category_seen = True
        if not known:
            out.append(OocCandidate(p, tuple(win[:i]), category_seen))
    return out


def _ooc(batch: _Batch, prior_scores: Mapping[str, float | None], model: ModelRef | None,
         config: DetectorConfig) -> list[Alert]:
    alerts = []
    for cand in _ooc_candidates(batch, config):
        p = cand.purchase
        score = prior_scores.get(p["event_id"])
        if score is None or not score < config.ooc_max_score:
            continue
        product = p.get("product") or {}
        evidence: dict = {
            "event_ids": [p["event_id"]],
            "prior_score": round(float(score), 6),
            "prior_events": len(cand.prior_window),
            "product_id": product.get("id", ""),
            "category_seen": int(cand.category_seen),
            "thresholds": {"max_score": config.ooc_max_score,
                           "min_prior_events": config.ooc_min_prior_events},
        }
        if product.get("category"):
            evidence["category"] = product["category"]
        if product.get("price") is not None:
            evidence["price"] = product["price"]
        alerts.append(_alert("out_of_character_purchase", p, evidence,
                             "medium" if cand.category_seen else "high", model))
    return alerts


def _price(batch: _Batch, stats: Mapping[str, CategoryStats],
           config: DetectorConfig) -> list[Alert]:
    alerts = []
    for i in batch.purchases:
        p = batch.win[i]
        product = p.get("product") or {}
        category, price = product.get("category"), product.get("price")
        if not category or price is None:
            continue
        entry = stats.get(category)
        if entry is None or len(entry) < config.price_min_samples:
            continue
        z = entry.robust_z(price, min_mad=config.price_min_mad_log)
        if not abs(z) > config.price_max_robust_z:
            continue
        median, mad = entry.median_mad()
        evidence = {
            "event_ids": [p["event_id"]],
            "product_id": product.get("id", ""),
            "category": category,
            "price": price,
            "median_price": round(math.exp(median), 2),
            "mad_log": round(mad, 6),
            "robust_z": round(abs(z), 3),
            "samples": len(entry),
            "direction": "above" if z > 0 else "below",
            "thresholds": {"max_robust_z": config.price_max_robust_z,
                           "min_samples": config.price_min_samples,
                           "min_mad_log": config.price_min_mad_log},
        }
        alerts.append(_alert("price_outlier", p, evidence,
                             "high" if abs(z) >= 2 * config.price_max_robust_z else "medium"))
    return alerts


def _alert(kind: str, trigger: dict, evidence: dict, severity: str,
           model: ModelRef | None = None) -> Alert:
    user = trigger["user_id"]
    return Alert(alert_id=alert_id(kind, user, evidence["event_ids"]), user_id=user, kind=kind,
                 severity=severity, evidence=evidence, event_ts=trigger["ts"], model=model)


def _price_of(event: dict) -> float:
    price = (event.get("product") or {}).get("price")
    return float(price) if price is not None else 0.0
