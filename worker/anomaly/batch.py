"""The anomaly detectors over one micro-batch: the one entry point that the worker's
pipeline (:mod:`worker.scoring.pipeline`) and the offline evaluation
(:mod:`worker.evaluation.anomalies`) both drive, so the figures measured offline are the
worker's. Per batch, in this order:

1. :meth:`BatchDetector.exchange` appends the batch to the windows and, in the same round
   trip, reads the category price samples of its new purchases and adds its prices.
2. :meth:`BatchDetector.prior_windows` lists the windows whose intent score the
   out-of-character detector needs (the window just before a candidate purchase; usually
   none); the caller scores them (the worker: in the batch's model call).
3. :meth:`BatchDetector.alerts` runs the four detectors per user, then filters the
   candidates against the users' cooldown state (read only for users with candidates).
4. Once the alerts were delivered, :meth:`BatchDetector.confirm` writes the cooldown state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.anomaly.alerts import Alert, ModelRef
from worker.anomaly.config import DetectorConfig
from worker.anomaly.cooldown import Cooldown, CooldownEntry, CooldownKey, merge_recent
from worker.anomaly.detectors import detect_all, ooc_candidates
from worker.anomaly.state import CooldownState, DetectorState, Exchanged, PriceExchange
from worker.anomaly.stats import PRICED_TYPES, CategoryStats, log_price

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["BatchDetector", "Detected", "PriorWindow"]

OOC = "out_of_character_purchase"


@dataclass(frozen=True, slots=True)
class PriorWindow:
    """A window to score for the out-of-character detector: the user's events before
    ``purchase_id``, oldest first."""

    user_id: str
    purchase_id: str
    purchase_ts: int
    window: tuple[dict, ...]


@dataclass(slots=True)
class Detected:
    """One batch's alerts: every candidate, those the cooldown lets through, and the cooldown
    state to write (per user) once those were delivered."""

    candidates: list[Alert] = field(default_factory=list)
    emitted: list[Alert] = field(default_factory=list)
    cooldown_updates: dict[str, CooldownState] = field(default_factory=dict)


class BatchDetector:
    """The detectors with their state store; nothing is kept here between batches."""

    __slots__ = ("config", "state", "stats_ttl_s", "_cooldown")

    def __init__(self, config: DetectorConfig, state: DetectorState, *,
                 stats_ttl_s: int = 7 * 86_400, resend_delivered: bool = False) -> None:
        self.config = config.validate()
        self.state = state
        self.stats_ttl_s = stats_ttl_s
        self._cooldown = Cooldown(config.cooldown_s, resend_delivered=resend_delivered)

    @classmethod
    def from_settings(cls, settings: Settings, state: DetectorState) -> BatchDetector:
        """The ``INTENT_ANOMALY_*`` thresholds on ``state``."""
        return cls(DetectorConfig.from_settings(settings), state,
                   stats_ttl_s=settings.anomaly_stats_ttl_seconds,
                   # exactly-once: an alert counts as delivered only when its transaction
                   # commits, which the cooldown write cannot see: resend, consumers dedupe
                   resend_delivered=settings.processing_guarantee == "exactly_once")

    async def exchange(self, new: Mapping[str, Sequence[dict]]) -> Exchanged:
        """Append ``new`` (user -> events) to the windows, with the price samples: one trip."""
        return await self.state.exchange(new, self.price_exchange(new))

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

    async def worth_scoring(self, priors: Sequence[PriorWindow]) -> list[PriorWindow]:
        """The ``priors`` whose purchase the cooldown could still let through. For callers
        that pay for each score (offline); skipping the others changes no alert."""
        if not priors:
            return []
        users = await self.state.cooldowns({p.user_id for p in priors})
        flat = {(user, OOC): [CooldownEntry(ts, aid) for ts, aid in kinds.get(OOC, [])]
                for user, kinds in users.items()}
        return [p for p in priors
                if not self._cooldown.suppresses_all(p.user_id, OOC, [p.purchase_ts], flat)]

    async def alerts(self, got: Exchanged, new: Mapping[str, Sequence[dict]], *,
                     prior_scores: Mapping[str, float] | None = None,
                     model: ModelRef | None = None) -> Detected:
        """The batch's alerts after the cooldown (the state is read, not written).

        ``prior_scores`` maps a candidate purchase's ``event_id`` to the score of its prior
        window (see :meth:`prior_windows`); a purchase without one never fires."""
        found = self.detect(got.windows, new, got.samples, prior_scores=prior_scores,
                            model=model)
        if not found:
            return Detected()
        state = await self.state.cooldowns({a.user_id for a in found})
        emitted, updates = self.cooldown(found, state)
        return Detected(found, emitted, updates)

    async def confirm(self, updates: Mapping[str, CooldownState]) -> None:
        """Record delivered alerts (:attr:`Detected.cooldown_updates`) in the cooldown state."""
        if updates:
            await self.state.save_cooldowns(updates)

    def detect(self, windows: Mapping[str, Sequence[dict]], new: Mapping[str, Sequence[dict]],
               samples: Mapping[str, Sequence[float]], *,
               prior_scores: Mapping[str, float] | None = None,
               model: ModelRef | None = None) -> list[Alert]:
        """Candidate alerts of every user of the batch (no cooldown yet)."""
        capacity = self.config.price_stats_capacity
        stats = {c: CategoryStats.from_logs(logs, capacity) for c, logs in samples.items()}
        prior = prior_scores or {}
        alerts: list[Alert] = []
        for user, events in new.items():
            alerts.extend(detect_all(windows[user], events, config=self.config, stats=stats,
                                     prior_scores=prior, model=model))
        return alerts

    def cooldown(self, alerts: Iterable[Alert], state: Mapping[str, CooldownState]
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
