"""Deduplication and cooldown of alerts per (user, kind), in event time.

State per (user, kind) is the last *delivered* alert: its event time and its id
(:class:`CooldownEntry`; in Redis a field of the user's cooldown hash, written only after
the broker acknowledged the alert). An alert is emitted when

* there is no entry for its (user, kind), or
* its event time is at least ``cooldown_s`` away from the entry's, in either direction
  (a late event can fire an alert for a moment long before the last one),

and it is not the entry's own alert: a redelivered batch (the worker died after
publishing, before committing) finds its alert already delivered and sends nothing. If
the worker dies between the broker's acknowledgement and the state write, the
redelivery sends the same ``alert_id`` again: at-least-once, consumers dedupe on it.

Everything else within the cooldown is dropped. Alerts are considered in
``(event_ts, alert_id)`` order, so the outcome does not depend on the order detectors ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.anomaly.alerts import Alert
from worker.errors import ConfigError

__all__ = ["Cooldown", "CooldownEntry", "CooldownKey"]

CooldownKey = tuple[str, str]  # (user_id, kind)


@dataclass(frozen=True, slots=True)
class CooldownEntry:
    """The last emitted alert of one (user, kind)."""

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


class Cooldown:
    """Pure cooldown logic: the caller owns the state and stores the updates."""

    __slots__ = ("cooldown_ms",)

    def __init__(self, cooldown_s: float) -> None:
        if not cooldown_s >= 0:
            raise ConfigError(f"anomaly threshold cooldown_s must be >= 0, got {cooldown_s!r}")
        self.cooldown_ms = cooldown_s * 1000.0

    def allows(self, alert: Alert, last: CooldownEntry | None) -> bool:
        """Whether ``alert`` may be emitted after ``last`` (the rules in the module doc)."""
        if last is None:
            return True
        return (alert.alert_id != last.alert_id
                and abs(alert.event_ts - last.event_ts) >= self.cooldown_ms)

    def suppresses_all(self, user_id: str, kind: str, event_ts: Iterable[int],
                       state: Mapping[CooldownKey, CooldownEntry]) -> bool:
        """True when no alert of (user, kind) at any of ``event_ts`` could be emitted whatever
        its id: lets a caller skip costly work (fetching a score) for candidates."""
        last = state.get((user_id, kind))
        if last is None:
            return False
        return all(abs(ts - last.event_ts) < self.cooldown_ms for ts in event_ts)

    def apply(self, alerts: Iterable[Alert], state: Mapping[CooldownKey, CooldownEntry]
              ) -> tuple[list[Alert], dict[CooldownKey, CooldownEntry]]:
        """``(emitted, updates)``: the alerts to publish, in ``(event_ts, alert_id)`` order,
        and the entries to write back (state itself is not changed). An entry moves only
        forward in event time: a late alert is emitted but leaves a newer entry in place."""
        emitted: list[Alert] = []
        seen: set[str] = set()
        updates: dict[CooldownKey, CooldownEntry] = {}
        for alert in sorted(alerts, key=lambda a: (a.event_ts, a.alert_id)):
            key = (alert.user_id, alert.kind)
            last = updates.get(key, state.get(key))
            if not self.allows(alert, last):
                continue
            if alert.alert_id in seen:
                continue  # the same alert twice in one call
            seen.add(alert.alert_id)
            emitted.append(alert)
            if last is None or alert.event_ts >= last.event_ts:
                updates[key] = CooldownEntry(alert.event_ts, alert.alert_id)
        return emitted, updates
