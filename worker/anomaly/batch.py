"""The detectors over one micro-batch: what to read and write, what to score, what fired.

The worker's pipeline and the offline evaluation (:mod:`worker.anomaly.evaluate`) drive
the same steps, so the figures measured offline are the worker's:

1. :meth:`BatchDetector.price_exchange` says which category samples the batch needs (the
   categories of its new purchases) and which prices it adds; the window store does both
   in the windows' round trip (:meth:`worker.windows.WindowStore.exchange`).
2. :meth:`BatchDetector.prior_windows` lists the windows whose intent score the
   out-of-character detector needs (the window just before a candidate purchase; usually
   none); the caller scores them with the batch's model call.
3. :meth:`BatchDetector.detect` runs the four detectors per user.
4. :meth:`BatchDetector.cooldown` filters the candidates against the users' cooldown
   state (read only for users with candidates) and says what to write back once the
   alerts are delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.anomaly.alerts import Alert, ModelRef
from worker.anomaly.config import DetectorConfig
from worker.anomaly.cooldown import Cooldown, CooldownEntry, CooldownKey, merge_recent
from worker.anomaly.detectors import detect_all, ooc_candidates
from worker.anomaly.stats import PRICED_TYPES, CategoryStats, log_price
from worker.windows.detector_state import CooldownState, PriceExchange

__all__ = ["BatchDetector", "PriorWindow"]


@dataclass(frozen=True, slots=True)
class PriorWindow:
    """A window to score for the out-of-character detector: the user's events before
    ``purchase_id``, oldest first."""

    user_id: str
    purchase_id: str
    purchase_ts: int
    window: tuple[dict, ...]


class BatchDetector:
    """Stateless between batches: every piece of state comes from the window store."""

    __slots__ = ("config", "stats_ttl_s", "_cooldown")

    def __init__(self, config: DetectorConfig, *, stats_ttl_s: int = 7 * 86_400,
                 resend_delivered: bool = False) -> None:
        self.config = config.validate()
        self.stats_ttl_s = stats_ttl_s
        self._cooldown = Cooldown(config.cooldown_s, resend_delivered=resend_delivered)

    def price_exchange(self, new: Mapping[str, Sequence[dict]]) -> PriceExchange:
        """Categories of the batch's new purchases (to read) and its priced events (to add)."""
        read: set[str] = set()
        add: dict[str, list[tuple[int, str, float]]] = {}
        for events in new.values():
            for e in events:
                etype = e.get("event_type")
                if etype not in PRICED_TYPES:
                    continue
                product = e.get("product") or {}
                category, price = product.get("category"), product.get("price")
                if not category or price is None:
                    continue
                if etype == "purchase":
                    read.add(category)
                add.setdefault(category, []).append((e["ts"], e["event_id"], log_price(price)))
        return PriceExchange(read=tuple(sorted(read)), add=add,
                             capacity=self.config.price_stats_capacity, ttl_s=self.stats_ttl_s)

    def prior_windows(self, windows: Mapping[str, Sequence[dict]],
                      new: Mapping[str, Sequence[dict]]) -> list[PriorWindow]:
        out = []
        for user, events in new.items():
            for cand in ooc_candidates(windows[user], events, self.config):
                p = cand.purchase
                out.append(PriorWindow(user, p["event_id"], p["ts"], cand.prior_window))
        return out

    def detect(self, windows: Mapping[str, Sequence[dict]], new: Mapping[str, Sequence[dict]],
               samples: Mapping[str, Sequence[float]], *,
               prior_scores: Mapping[str, float] | None = None,
               model: ModelRef | None = None) -> list[Alert]:
        """Candidate alerts of every user of the batch (no cooldown yet).

        ``prior_scores`` maps a candidate purchase's ``event_id`` to the score of its prior
        window (see :meth:`prior_windows`); a purchase without one never fires."""
        capacity = self.config.price_stats_capacity
        stats = {c: CategoryStats.from_logs(logs, capacity) for c, logs in samples.items()}
        prior = prior_scores or {}
        alerts: list[Alert] = []
        for user, events in new.items():
            alerts.extend(detect_all(windows[user], events, config=self.config, stats=stats,
                                     prior_scores=prior, model=model))
        return alerts

    def cooldown(self, alerts: Sequence[Alert], state: Mapping[str, CooldownState]
                 ) -> tuple[list[Alert], dict[str, CooldownState]]:
        """``(to_publish, to_save)``: the alerts the cooldown lets through, and the state to
        write back (per user) after they were delivered."""
        flat: dict[CooldownKey, list[CooldownEntry]] = {
            (user, kind): [CooldownEntry(ts, aid) for ts, aid in recent]
            for user, kinds in state.items() for kind, recent in kinds.items()}
        emitted, updates = self._cooldown.apply(alerts, flat)
        save: dict[str, CooldownState] = {}
        for (user, kind), new in updates.items():
            merged = merge_recent(flat.get((user, kind), []), new)
            save.setdefault(user, {})[kind] = [(e.event_ts, e.alert_id) for e in merged]
        return emitted, save
