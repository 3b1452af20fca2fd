"""A window as a sequence of events for the event-vector models: each event's phrase (no age,
see :mod:`worker.features.phrase`) and its age to the newest event, newest first.

A phrase depends on its event alone, so its vector is computed once and shared by every
window, user and worker that sees it; the age carries the time the phrase leaves out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.features.facts import EVENT, LATER, TS, VECTOR_PHRASE
from worker.features.phrase import PriceMode, event_phrase

__all__ = ["EventSequence", "facts_sequence"]


@dataclass(frozen=True, slots=True)
class EventSequence:
    """A window's events, newest first: ``phrases[i]`` is event ``i``'s phrase and
    ``ages_s[i]`` its event-time age in seconds at the newest event (``ages_s[0] == 0``)."""

    phrases: tuple[str, ...]
    ages_s: tuple[float, ...]


def facts_sequence(facts: Sequence[tuple], *, price: PriceMode) -> EventSequence:
    """The :class:`EventSequence` of a window's facts (oldest first, as
    :func:`~worker.features.facts.window_facts` returns them). Each event's phrase is kept in
    its facts with its price mode, so a cached event is rendered once per mode."""
    newest_ts = facts[-1][TS]
    phrases: list[str] = []
    ages: list[float] = []
    for f in reversed(facts):
        later = f[LATER]
        cached = later[VECTOR_PHRASE]
        if cached is None or cached[0] != price:
            cached = later[VECTOR_PHRASE] = (price, event_phrase(f[EVENT], price=price))
        phrases.append(cached[1])
        ages.append((newest_ts - f[TS]) / 1000.0)
    return EventSequence(tuple(phrases), tuple(ages))
