"""The model input of one window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.features.context import facts_features
from worker.features.facts import EventCache, window_facts
from worker.features.phrase import PriceMode
from worker.features.sequence import EventSequence, facts_sequence
from worker.features.text import facts_text


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What a model scores for one user: its context features and what its kind of model
    reads of the window: the window text (text models) or the event sequence (event-vector
    models); the other is empty.

    ``features`` follow the order of :data:`worker.features.FEATURE_NAMES`.
    """

    text: str
    features: tuple[float, ...]
    events: EventSequence | None = None


def build_input(window: Sequence[dict], *, max_chars: int, phrase_price: PriceMode | None = None,
                cache: EventCache | None = None) -> ModelInput:
    """Context features of a window (oldest event first; empty is a ValueError), plus its text
    when ``max_chars`` > 0 and its event sequence when ``phrase_price`` is set (the phrases'
    price mode).

    ``cache`` keeps each event's share of the work for the next windows that hold the same
    event dicts (the worker's windows, batch after batch); the input is the same with or
    without it.
    """
    facts = window_facts(window, cache)
    text = facts_text(facts, max_chars=max_chars) if max_chars > 0 else ""
    events = facts_sequence(facts, price=phrase_price) if phrase_price is not None else None
    return ModelInput(text=text, features=facts_features(facts), events=events)
