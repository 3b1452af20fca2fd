"""Helpers on a window (a list of normalised events, oldest first)."""

from __future__ import annotations

from collections.abc import Sequence


def oldest_first(window: Sequence[dict]) -> list[dict]:
    """The events in event-time order (``ts``, then ``event_id``); an empty window is a ValueError.

    Windows from the store are already in this order (sorting them again costs one pass);
    sorting here makes the features independent of how a caller built the list.
    """
    if not window:
        raise ValueError("empty window: nothing to build a model input from")
    return sorted(window, key=lambda e: (e["ts"], e.get("event_id", "")))
