"""The scorer interface and the benchmark-only no-op scorer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from worker.features import ModelInput

if TYPE_CHECKING:
    from worker.model.explain import Explanation


@runtime_checkable
class Scorer(Protocol):
    """Turns model inputs into purchase probabilities.

    ``score`` is synchronous and is called off the event loop (in a worker thread);
    it returns exactly one probability in [0, 1] per input, in input order. The inputs carry
    what the scorer reads: the window text when ``max_chars`` > 0, the event sequence when
    ``phrase_price`` is set (an optional attribute; absent means None).
    """

    name: str
    version: str
    max_chars: int  # text budget of one window (the model's token budget, in characters)

    def score(self, inputs: Sequence[ModelInput]) -> list[float]: ...


@runtime_checkable
class AsyncScorer(Protocol):
    """A scorer whose inputs need I/O (event vectors from a shared store): the pipeline awaits
    ``score_async`` on the event loop instead of running ``score`` in a thread; the scorer
    runs its own blocking work (the encoder) in its executor."""

    name: str
    version: str
    max_chars: int
    phrase_price: str

    async def score_async(self, inputs: Sequence[ModelInput]) -> list[float]: ...


@runtime_checkable
class ExplainingScorer(Protocol):
    """An :class:`AsyncScorer` that can also explain its scores (the pooled window model):
    with ``INTENT_EXPLAIN`` on the pipeline awaits ``explain_async`` instead of
    ``score_async``. Scorers without it publish records without an explanation."""

    name: str
    version: str
    max_chars: int
    phrase_price: str

    async def explain_async(self, inputs: Sequence[ModelInput], *, top: int
                            ) -> tuple[list[float], list[Explanation]]: ...


class NoopScorer:
    """Scores every input 0.5 without a model: measures the pipeline's own cost."""

    name = "noop"
    version = "0"
    max_chars = 768
    phrase_price = None

    def score(self, inputs: Sequence[ModelInput]) -> list[float]:
        return [0.5] * len(inputs)
