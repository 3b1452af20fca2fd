"""The model input of one window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.features.context import facts_features
from worker.features.facts import EventCache, window_facts
from worker.features.text import facts_text


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What the model scores for one user: the window text and its context features.

    ``features`` follow the order of :data:`worker.features.FEATURE_NAMES`.
    """

    text: str
    features: tuple[float, ...]


def build_input(window: Sequence[dict], *, max_chars: int,
                cache: EventCache | None = None) -> ModelInput:
    """Text and context features of a window (oldest event first); empty is a ValueError.

    ``cache`` keeps each event's share of the work for the next windows that hold the same
    event dicts (the worker's windows, batch after batch); the input is the same with or
    without it.
    """
    facts = window_facts(window, cache)
    return ModelInput(text=facts_text(facts, max_chars=max_chars), features=facts_features(facts))
