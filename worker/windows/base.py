"""The window store interface: a rolling, per-user window of normalised events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["WindowStore"]


@runtime_checkable
class WindowStore(Protocol):
    """Keeps each user's recent events and hands back the window after every append.

    A window is a ``list[dict]`` of normalised events (see docs/contracts.md),
    **oldest first**. The contract, and the traps in it:

    * **Idempotent by ``event_id``.** Kafka delivers at least once; an event
      whose ``event_id`` is already in the user's window is ignored, *even if
      its payload differs* (first write wins; a redelivery may be re-serialised
      or carry a different ``ts``, and neither replaces what is stored). Within
      one batch the first occurrence wins. Retrying a whole batch after a
      failure is therefore always safe. An event that was already trimmed out
      of the window is not remembered: redelivered, it is added and then trimmed
      again, unless the window has since expired (TTL) and it fits again.
    * **Ordered by event time, not arrival.** ``ts`` ascending; events with
      equal ``ts`` are ordered by ``event_id`` (code-point order, which equals
      the byte order of UTF-8 and so Redis' sorted-set tie order). Late events
      land in their place, not at the end.
    * **Trimmed by count:** at most ``max_events``, the newest kept (the tie
      rule above decides which of two equal ``ts`` is "newer").
    * **Trimmed by span, measured back from the newest event in the window**
      (event time, never the wall clock): an event is kept iff
      ``ts >= newest_ts - span_ms``; one exactly ``span_ms`` older than the
      newest stays. A late event older than that is dropped on arrival, and a
      newer event arriving can push older ones out. The span does not move
      while no events arrive: a quiet user's window is not trimmed by time
      passing, only expired by the TTL.
    * **TTL refresh on every write = data retention.** Every ``append`` that
      touches a user (even with an empty list of events for that user) resets
      the time-to-live of *all* of that user's keys, so a window disappears
      ``ttl`` after the user's last event was written, measured on the store's
      clock (processing time). This is the retention of personal data; keep it
      as short as the product allows, and use :meth:`forget` for erasure.

    ``append`` makes ONE round trip to the backing store for the whole batch,
    whatever the number of users; it is not atomic across users (a failure may
    leave some users appended and others not, which a retry repairs, see
    idempotency). Failures of the backing store raise
    :class:`worker.errors.StoreError` (``retriable``).
    """

    async def start(self) -> None:
        """Connect (or check the connection) and prepare; call once before use."""
        ...

    async def stop(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        ...

    async def append(self, batch: Mapping[str, Sequence[dict]]) -> dict[str, list[dict]]:
        """Add each user's events, trim, refresh TTLs; return every touched user's window.

        ``batch`` maps ``user_id`` to that user's events, in any order; every
        event's ``user_id`` must equal its key, its ``ts`` must be an int and
        its ``event_id`` a non-empty string, else ``ValueError`` is raised
        before anything is written. The
        result has one entry per key of ``batch`` (a user with no events gets
        the current window back) and is a fresh copy the caller may mutate.
        An empty batch returns ``{}`` without touching the backing store.
        """
        ...

    async def forget(self, user_id: str) -> None:
        """Delete the window of ``user_id`` (erasure requests): its events and payloads. State
        that other stores keep beside the window (under the same user key tag) is theirs
        to delete."""
        ...

    async def ping(self) -> None:
        """Raise :class:`worker.errors.StoreError` unless the backing store answers."""
        ...
