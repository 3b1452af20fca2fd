"""The detectors' state store interface, and what travels through it.

Two kinds of state:

* **Category price samples** (:class:`PriceExchange`): per product category, the log
  prices of its last ``capacity`` priced events, newest by event time. A sample entry is
  ``(ts, event_id, log_price)``; the member stored is ``"<log_price>|<event_id>"``, added
  with "first write wins", so a redelivered event never counts twice. The samples asked
  for in ``read`` are returned as they were *before* this batch's ``add``: a purchase is
  judged against the prices seen before its batch. (On a redelivered batch its own prices
  are already in: one sample among up to ``capacity``.)
* **Alert cooldowns**, per user and kind: the last few alerts *delivered* (event time ms and
  ``alert_id``). Read only for users with candidate alerts, written only after the alerts
  reached the broker (see :mod:`worker.anomaly.cooldown`). Kept with the window's TTL, and
  deleted by ``forget``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["CooldownState", "DetectorState", "Exchanged", "PriceExchange", "member",
           "member_log_price"]

# kind -> the recently delivered alerts [(event_ts_ms, alert_id), ...], oldest first, of one user
CooldownState = dict[str, list[tuple[int, str]]]


@dataclass(frozen=True, slots=True)
class PriceExchange:
    """Category samples to read (before) and entries to add (after), in one round trip."""

    read: tuple[str, ...] = ()
    add: Mapping[str, Sequence[tuple[int, str, float]]] = field(default_factory=dict)
    capacity: int = 200
    ttl_s: int = 7 * 86_400

    def __post_init__(self) -> None:
        if type(self.capacity) is not int or self.capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {self.capacity!r}")
        if type(self.ttl_s) is not int or self.ttl_s < 1:
            raise ValueError(f"ttl_s must be an integer >= 1, got {self.ttl_s!r}")
        for category, entries in self.add.items():
            for ts, event_id, logp in entries:
                if type(ts) is not int or not event_id or not math.isfinite(logp):
                    raise ValueError(f"bad price sample entry for {category!r}: "
                                     f"{(ts, event_id, logp)!r}")

    @property
    def empty(self) -> bool:
        return not self.read and not self.add


@dataclass(slots=True)
class Exchanged:
    """What one batch's round trip returns: windows by user, samples by category."""

    windows: dict[str, list[dict]]
    samples: dict[str, list[float]] = field(default_factory=dict)


@runtime_checkable
class DetectorState(Protocol):
    """The detectors' state, kept beside a window store and written with it.

    Failures of the backing store raise :class:`worker.errors.StoreError` (``retriable``).
    """

    async def exchange(self, batch: Mapping[str, Sequence[dict]],
                       prices: PriceExchange | None = None) -> Exchanged:
        """The window store's ``append`` of ``batch``, plus the price samples, in the window
        store's single round trip: the samples of ``prices.read`` as they were before this
        call, then ``prices.add`` written (first write wins per event, trimmed to the newest
        ``capacity`` by event time, TTL refreshed)."""
        ...

    async def cooldowns(self, users: Iterable[str]) -> dict[str, CooldownState]:
        """The alert cooldown state of each of ``users`` (``{}`` for a user with none)."""
        ...

    async def save_cooldowns(self, updates: Mapping[str, CooldownState]) -> None:
        """Write ``updates`` (user -> kind -> recently delivered [(ts, alert_id)]): each kind
        given replaces the stored list, other kinds stay; each written user's cooldown state
        gets the window TTL."""
        ...

    async def forget(self, user_id: str) -> None:
        """Delete the alert cooldowns of ``user_id`` (erasure requests; the window store's
        ``forget`` deletes the window). Category price samples hold no user id and are kept."""
        ...


def member(event_id: str, log_price: float) -> str:
    """The stored sample member: ``repr`` keeps the float exact, the id makes it unique."""
    return f"{log_price!r}|{event_id}"


def member_log_price(raw: bytes | str) -> float:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return float(text.split("|", 1)[0])
