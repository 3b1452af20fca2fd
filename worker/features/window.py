"""Helpers on a window (a list of normalised events, oldest first)."""

from __future__ import annotations

from collections.abc import Sequence


def oldest_first(window: Sequence[dict]) -> list[dict]:
    """The events in event-time order (``ts``, then ``event_id``); an empty window is a ValueError.

    Windows from the store are already in this order; that is checked on the timestamps alone
    (C-level list operations) and the full sort runs only when they are out of order or tied,
    so the features do not depend on how a caller built the list.
    """
    if not window:
        raise ValueError("empty window: nothing to build a model input from")
    ts = [e["ts"] for e in window]
    if ts == sorted(ts) and len(set(ts)) == len(ts):  # strictly increasing: nothing to sort
        return list(window)
    return sorted(window, key=lambda e: (e["ts"], e.get("event_id", "")))
