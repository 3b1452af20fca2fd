"""Labelled examples: the window a user had right after each event, and what came next.

The label is defined here and only here (:data:`LABEL_DEFINITION`). Windows are built by
replaying the events, in ``(ts, event_id)`` order, one at a time through the worker's own
in-memory window store (:class:`worker.windows.MemoryWindowStore`, the Redis store's
semantics: idempotent by event id, trimmed by count and by event-time span), so the
window an example holds is the window the worker would have scored after that event.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.features.window import by_event_time
from worker.settings import Settings
from worker.windows import MemoryWindowStore

__all__ = ["DEFAULT_HORIZON_S", "DEFAULT_MAX_EVENTS", "DEFAULT_WINDOW_SECONDS",
           "LABEL_DEFINITION", "Example", "LabelSpec", "bought_within", "build_examples",
           "is_example"]

DEFAULT_HORIZON_S = 600
# The worker's own window by default: examples hold what the worker would score.
DEFAULT_MAX_EVENTS: int = Settings.model_fields["window_max_events"].default
DEFAULT_WINDOW_SECONDS: int = Settings.model_fields["window_seconds"].default
LABEL_DEFINITION = (
    "One example per non-purchase event: the user's window right after that event (worker "
    "window semantics: at most max_events events spanning at most window_seconds). "
    "Label 1 iff the same user has a purchase event with ts in (event.ts, event.ts + "
    "horizon_s]; purchases are never examples. Examples with event.ts + horizon_s after the "
    "last event time in the data are left out (censored)."
)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """What a label means; recorded in the model config and the model card."""

    horizon_s: int = DEFAULT_HORIZON_S
    definition: str = LABEL_DEFINITION

    def to_json(self) -> dict[str, Any]:
        return {"name": f"purchase_within_{self.horizon_s}s", "horizon_s": self.horizon_s,
                "definition": self.definition}


@dataclass(frozen=True, slots=True)
class Example:
    """The window after one event (oldest first, the event itself newest) and its label."""

    user_id: str
    event_id: str
    ts: int
    window: tuple[dict, ...]
    label: int


def build_examples(events: Iterable[dict], *, horizon_s: int = DEFAULT_HORIZON_S,
                   max_events: int, window_seconds: int) -> list[Example]:
    """Examples of normalised events (any order; sorted here), in ``(ts, event_id)`` order.

    Cost: one window-store append per event (O(window) each) and a binary search of the
    user's purchase times per example.
    """
    if horizon_s < 1:
        raise ValueError(f"horizon_s must be >= 1, got {horizon_s}")
    ordered = by_event_time(events)
    if not ordered:
        return []
    horizon_ms = horizon_s * 1000
    end_ms = ordered[-1]["ts"]
    purchases: dict[str, list[int]] = {}
    for event in ordered:
        if event["event_type"] == "purchase":
            purchases.setdefault(event["user_id"], []).append(event["ts"])  # ascending

    store = MemoryWindowStore(max_events=max_events, span_ms=window_seconds * 1000)
    out: list[Example] = []
    for event in ordered:
        user, ts = event["user_id"], event["ts"]
        window = store.append_sync({user: [event]})[user]
        if not is_example(event) or ts + horizon_ms > end_ms:
            continue
        out.append(Example(user_id=user, event_id=event["event_id"], ts=ts,
                           window=tuple(window),
                           label=bought_within(purchases.get(user, ()), ts, horizon_ms)))
    return out


def is_example(event: dict) -> bool:
    """Whether the window right after ``event`` is an example: purchases never are. The worker's
    outcome tracker asks the same of a score record's newest event."""
    return event["event_type"] != "purchase"


def bought_within(times: Sequence[int], ts: int, horizon_ms: int) -> int:
    """The label: 1 iff some purchase time lies in ``(ts, ts + horizon_ms]``; ``times``
    ascending. Training, ``evaluate`` and the worker's outcomes all label with this."""
    i = bisect.bisect_right(times, ts)
    return int(i < len(times) and times[i] <= ts + horizon_ms)
