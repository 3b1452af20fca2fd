"""Deduplication and cooldown of alerts per (user, kind), in event time.

State per (user, kind) is its last few *delivered* alerts (event time and id,
:class:`CooldownEntry`; in Redis a field of the user's cooldown hash, written only after
the broker acknowledged the alerts). An alert is emitted when

* there is no entry for its (user, kind), or
* its event time is at least ``cooldown_s`` away from the newest entry's, in either
  direction (a late event can fire an alert for a moment long before the last one),

and it is not one of the delivered alerts: a redelivered batch (the worker died after
publishing, before committing), or several, find their alerts already delivered and send
nothing. If the worker dies between the broker's acknowledgement and the state write, the
redelivery sends the same ``alert_id`` again: at-least-once, consumers dedupe on it.

Everything else within the cooldown is dropped. Alerts are considered in
``(event_ts, alert_id)`` order, so the outcome does not depend on the order detectors ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.anomaly.alerts import Alert
from worker.errors import ConfigError

__all__ = ["RECENT", "Cooldown", "CooldownEntry", "CooldownKey", "merge_recent"]

CooldownKey = tuple[str, str]  # (user_id, kind)


@dataclass(frozen=True, slots=True)
class CooldownEntry:
    """A delivered alert of one (user, kind): its event time and id."""

    event_ts: int
    alert_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.event_ts, "id": self.alert_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CooldownEntry:
        try:
            return cls(int(data["ts"]), str(data["id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad cooldown entry {str(data)[:100]!r}: {exc}") from None


RECENT = 8  # delivered alerts remembered per (user, kind), for redelivery dedupe


class Cooldown:
    """Pure cooldown logic: the caller owns the state and stores the updates.

    ``state`` maps a (user, kind) to its recently delivered alerts (any order; the store keeps
    the last :data:`RECENT`). With ``resend_delivered`` (exactly-once mode, where "delivered"
    is only known once the transaction commits) an alert already in the state is sent again
    instead of suppressed: consumers reading committed records dedupe on ``alert_id``.
    """

    __slots__ = ("cooldown_ms", "resend_delivered")

    def __init__(self, cooldown_s: float, *, resend_delivered: bool = False) -> None:
        if not cooldown_s >= 0:
            raise ConfigError(f"anomaly threshold cooldown_s must be >= 0, got {cooldown_s!r}")
        self.cooldown_ms = cooldown_s * 1000.0
        self.resend_delivered = resend_delivered

    def allows(self, alert: Alert, recent: Sequence[CooldownEntry]) -> bool:
        """Whether ``alert`` may be emitted after the (user, kind)'s ``recent`` deliveries."""
        if any(e.alert_id == alert.alert_id for e in recent):
            return self.resend_delivered
        last = max(recent, key=lambda e: e.event_ts, default=None)
        return last is None or abs(alert.event_ts - last.event_ts) >= self.cooldown_ms

    def suppresses_all(self, user_id: str, kind: str, event_ts: Iterable[int],
                       state: Mapping[CooldownKey, Sequence[CooldownEntry] | CooldownEntry]
                       ) -> bool:
        """True when no alert of (user, kind) at any of ``event_ts`` could be emitted whatever
        its id: lets a caller skip costly work (fetching a score) for candidates."""
        recent = _entries(state.get((user_id, kind)))
        if not recent:
            return False
        last = max(recent, key=lambda e: e.event_ts)
        return all(abs(ts - last.event_ts) < self.cooldown_ms for ts in event_ts)

    def apply(self, alerts: Iterable[Alert],
              state: Mapping[CooldownKey, Sequence[CooldownEntry] | CooldownEntry]
              ) -> tuple[list[Alert], dict[CooldownKey, list[CooldownEntry]]]:
        """``(emitted, updates)``: the alerts to publish, in ``(event_ts, alert_id)`` order,
        and per (user, kind) the entries of the emitted ones, to add to the state once they
        are delivered (state itself is not changed)."""
        emitted: list[Alert] = []
        seen: set[str] = set()
        updates: dict[CooldownKey, list[CooldownEntry]] = {}
        for alert in sorted(alerts, key=lambda a: (a.event_ts, a.alert_id)):
            key = (alert.user_id, alert.kind)
            if alert.alert_id in seen:
                continue  # the same alert twice in one call
            recent = [*_entries(state.get(key)), *updates.get(key, [])]
            if not self.allows(alert, recent):
                continue
            seen.add(alert.alert_id)
            emitted.append(alert)
            updates.setdefault(key, []).append(CooldownEntry(alert.event_ts, alert.alert_id))
        return emitted, updates


def merge_recent(old: Iterable[CooldownEntry], new: Iterable[CooldownEntry]) -> list[CooldownEntry]:
    """The state after delivering ``new``: one entry per id, the :data:`RECENT` newest by
    event time, oldest first."""
    by_id = {e.alert_id: e for e in old}
    by_id.update((e.alert_id, e) for e in new)
    return sorted(by_id.values(), key=lambda e: (e.event_ts, e.alert_id))[-RECENT:]


def _entries(value: Sequence[CooldownEntry] | CooldownEntry | None) -> list[CooldownEntry]:
    if value is None:
        return []
    if isinstance(value, CooldownEntry):
        return [value]
    return list(value)
