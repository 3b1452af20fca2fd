"""The scorer interface and the benchmark-only no-op scorer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from worker.features import ModelInput


@runtime_checkable
class Scorer(Protocol):
    """Turns model inputs into purchase probabilities.

    ``score`` is synchronous and is called off the event loop (in a worker thread);
    it returns exactly one probability in [0, 1] per input, in input order.
    """

    name: str
    version: str
    max_chars: int  # text budget of one window (the model's token budget, in characters)

    def score(self, inputs: Sequence[ModelInput]) -> list[float]: ...


class NoopScorer:
    """Scores every input 0.5 without a model: measures the pipeline's own cost."""

    name = "noop"
    version = "0"
    max_chars = 768

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        return [0.5] * len(inputs)
