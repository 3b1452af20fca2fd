"""Event-time order, and helpers on a window (a list of normalised events, oldest first).

Event-time order is ``ts``, then ``event_id``: two events with the same timestamp always
come out in the same order, whoever sorts them. Windows, training examples, evaluation
replays and the detectors' state all use :func:`by_event_time`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["by_event_time", "event_time_key", "oldest_first"]


def event_time_key(event: Mapping[str, Any]) -> tuple[int, str]:
    """The sort key of event-time order: ``(ts, event_id)``."""
    return event["ts"], event.get("event_id", "")


def by_event_time(events: Iterable[dict]) -> list[dict]:
    """A new list of ``events`` in event-time order."""
    return sorted(events, key=event_time_key)


def oldest_first(window: Sequence[dict]) -> list[dict]:
    """The events in event-time order; an empty window is a ValueError.

    Windows from the store are already in this order; that is checked on the timestamps alone
    (C-level list operations) and the full sort runs only when they are out of order or tied,
    so the features do not depend on how a caller built the list.
    """
    if not window:
        raise ValueError("empty window: nothing to build a model input from")
    ts = [e["ts"] for e in window]
    if ts == sorted(ts) and len(set(ts)) == len(ts):  # strictly increasing: nothing to sort
        return list(window)
    return by_event_time(window)
