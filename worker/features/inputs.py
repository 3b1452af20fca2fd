"""The model input of one window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.features.context import context_features
from worker.features.text import build_text


@dataclass(frozen=True, slots=True)
class ModelInput:
    """What the model scores for one user: the window text and its context features.

    ``features`` follow the order of :data:`worker.features.FEATURE_NAMES`.
    """

    text: str
    features: tuple[float, ...]


def build_input(window: Sequence[dict], *, max_chars: int) -> ModelInput:
    """Text and context features of a window (oldest event first); empty is a ValueError."""
    return ModelInput(text=build_text(window, max_chars=max_chars),
                      features=context_features(window))
