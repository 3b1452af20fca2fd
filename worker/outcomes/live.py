"""Rolling live quality and score drift per served model.

:class:`LiveQuality` keeps, per (model name, version, role), the last ``window`` outcomes
(score, label) and the last ``score_window`` served scores. ``figures()`` computes from them
what offline evaluation computes on a labelled set: PR-AUC, ROC-AUC, Brier score and expected
calibration error, with the same functions (:func:`worker.dataset.metrics.compute_metrics`, 10
equal-width ECE bins), so a live figure and an ``evaluate`` figure over the same (score, label)
pairs are the same number. Drift is the population stability index of the served scores
against the reference the model directory recorded at training time (any object with
``psi(scores) -> float``).

Costs: adding is O(batch) (appends to bounded deques); the figures are computed only when
``figures()`` is called, in O(window log window) per key whose data changed since the last
call (unchanged keys reuse their figures): about 1 ms per key for a window of 5,000, 8 ms
for 50,000. Memory is bounded: at most :data:`MAX_KEYS` keys, each holding at most ``window``
outcomes (about 40 bytes each) and ``score_window`` scores (about 32 bytes each), and at most
:data:`MAX_KEYS` references. A key is forgotten when it has seen nothing for
:data:`IDLE_S` seconds (monotonic clock), or, when a new key would make more than
:data:`MAX_KEYS`, the key that has gone longest without data: after a hot swap the old
version's figures stay visible a while, next to the new one's, and then go.

Not thread-safe: call it from one thread (the worker: its event loop).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from worker.dataset.metrics import compute_metrics

__all__ = ["IDLE_S", "MAX_KEYS", "LiveFigures", "LiveQuality", "Reference"]

# Enough for a champion and a shadow through a few hot swaps of either.
MAX_KEYS = 8
# A model that produced no score and no outcome for an hour is no longer served: after the
# swap that replaced it, its last pending outcomes resolve within its horizon (plus the
# allowed lateness), minutes, not an hour.
IDLE_S = 3600.0

_NAN = math.nan

log = logging.getLogger(__name__)


class Reference(Protocol):
    """A model's training-time score distribution (``worker.model.reference.ScoreReference``)."""

    def psi(self, scores: Sequence[float]) -> float: ...


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """One model's figures over its rolling window; ``nan`` where a figure is undefined.

    ``pr_auc`` and ``roc_auc`` need both a positive and a negative in the window; ``brier``
    and ``ece`` need one outcome; ``psi`` needs a reference and one served score. ``outcomes``
    and ``positives`` count the window; ``outcomes_total`` and ``scores_total`` everything
    added since the key was first seen.
    """

    model: str
    version: str
    role: str
    outcomes: int
    positives: int
    pr_auc: float
    roc_auc: float
    brier: float
    ece: float
    psi: float
    outcomes_total: int
    scores_total: int


@dataclass(eq=False, slots=True)
class _Key:
    # the window of outcomes, as two deques of the same length (no tuple per outcome)
    outcome_scores: deque[float]
    labels: deque[int]
    scores: deque[float]
    touched: float
    outcomes_total: int = 0
    scores_total: int = 0
    changed: bool = True
    figures: LiveFigures | None = field(default=None)


class LiveQuality:
    """Rolling live-quality and drift figures per (model, version, role); see the module doc.

    ``window``: outcomes kept per key; ``score_window``: served scores kept per key for the
    PSI (default: ``window``); ``clock``: seconds, monotonic (for forgetting idle keys).
    """

    def __init__(self, *, window: int, score_window: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        score_window = window if score_window is None else score_window
        if window < 1 or score_window < 1:
            raise ValueError(f"window and score_window must be >= 1, got {window}, "
                             f"{score_window}")
        self.window = window
        self.score_window = score_window
        self._clock = clock
        self._keys: OrderedDict[tuple[str, str, str], _Key] = OrderedDict()  # oldest first
        self._references: OrderedDict[tuple[str, str], Reference] = OrderedDict()

    def set_reference(self, model: str, version: str, reference: Reference | None) -> None:
        """The training-time score distribution of ``model`` ``version`` (``None``: none, its
        PSI is ``nan``). Kept for the :data:`MAX_KEYS` models set last."""
        self._references.pop((model, version), None)
        if reference is not None:
            self._references[(model, version)] = reference
            while len(self._references) > MAX_KEYS:
                self._references.popitem(last=False)
        for (m, v, _), key in self._keys.items():
            if (m, v) == (model, version):
                key.changed = True

    def add_scores(self, model: str, version: str, role: str,
                   scores: Sequence[float]) -> None:
        """Scores the model served (champion) or computed (shadow), for its drift. A score that
        is not a probability is left out, with a warning."""
        kept = [float(s) for s in scores if 0.0 <= s <= 1.0]  # also leaves out nan
        if len(kept) < len(scores):
            _warn_dropped(model, version, role, len(scores) - len(kept))
        if not kept:
            return
        key = self._key(model, version, role)
        key.scores.extend(kept)
        key.scores_total += len(kept)

    def add_outcomes(self, model: str, version: str, role: str, scores: Sequence[float],
                     labels: Sequence[int]) -> None:
        """Resolved outcomes: the model's score of each and its label (0/1). An outcome whose
        score is not a probability or whose label is not 0/1 is left out, with a warning (a
        metric never fails a batch); ``ValueError`` if the lengths differ."""
        if len(scores) != len(labels):
            raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
        kept = [(float(s), int(y)) for s, y in zip(scores, labels, strict=True)
                if 0.0 <= s <= 1.0 and y in (0, 1)]
        if len(kept) < len(scores):
            _warn_dropped(model, version, role, len(scores) - len(kept))
        if not kept:
            return
        key = self._key(model, version, role)
        key.outcome_scores.extend(s for s, _ in kept)
        key.labels.extend(y for _, y in kept)
        key.outcomes_total += len(kept)

    def figures(self) -> list[LiveFigures]:
        """The figures of every key still kept, in the order the keys were last fed."""
        self._forget_idle()
        out = []
        for (model, version, role), key in self._keys.items():
            if key.changed or key.figures is None:
                key.figures = self._compute(model, version, role, key)
                key.changed = False
            out.append(key.figures)
        return out

    def _key(self, model: str, version: str, role: str) -> _Key:
        now = self._clock()
        name = (model, version, role)
        key = self._keys.pop(name, None)
        if key is None:
            self._forget_idle(now)
            while len(self._keys) >= MAX_KEYS:
                self._keys.popitem(last=False)
            key = _Key(outcome_scores=deque(maxlen=self.window), labels=deque(maxlen=self.window),
                       scores=deque(maxlen=self.score_window), touched=now)
        key.touched = now
        key.changed = True
        self._keys[name] = key  # newest last
        return key

    def _forget_idle(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        while self._keys:
            oldest = next(iter(self._keys.values()))
            if now - oldest.touched <= IDLE_S:
                break
            self._keys.popitem(last=False)

    def _compute(self, model: str, version: str, role: str, key: _Key) -> LiveFigures:
        pr_auc = roc_auc = brier = ece = _NAN
        positives = 0
        n = len(key.labels)
        if n:
            m = compute_metrics(np.fromiter(key.labels, np.int8, n),
                                np.fromiter(key.outcome_scores, np.float64, n),
                                top_k_pcts=(100,))
            pr_auc, roc_auc, brier, ece = (_nan_if_none(m[k]) for k in
                                           ("pr_auc", "roc_auc", "brier", "ece"))
            positives = m["counts"]["positives"]
        reference = self._references.get((model, version))
        psi = _NAN
        if reference is not None and key.scores:
            psi = float(reference.psi(list(key.scores)))
        return LiveFigures(model=model, version=version, role=role,
                           outcomes=n, positives=positives, pr_auc=pr_auc,
                           roc_auc=roc_auc, brier=brier, ece=ece, psi=psi,
                           outcomes_total=key.outcomes_total, scores_total=key.scores_total)


def _nan_if_none(value: float | None) -> float:
    return _NAN if value is None else float(value)


def _warn_dropped(model: str, version: str, role: str, n: int) -> None:
    log.warning("live quality: %d scores of %s %s (%s) left out: not probabilities in [0, 1] "
                "or labels not 0/1", n, model, version, role)
