"""The score distribution a model directory records at training time, and drift against it.

:class:`ScoreReference` is the ``score_reference`` section of ``config.json``::

    "score_reference": {"edges": [0.021, 0.027, ...],   # ascending interior cut points
                        "shares": [0.1, 0.1, ...],      # one more than edges; sums to 1
                        "n": 1827,                      # scores it was made from
                        "source": "validation users' examples ..."}

Bins are closed on the right: the first is ``(-inf, edges[0]]``, bin ``i`` is
``(edges[i-1], edges[i]]``, the last ``(edges[-1], +inf)``. Training makes the reference from
the shipped model's scores on its validation users' examples (one score per example, the
example definition of :mod:`worker.dataset.examples`, which the worker's outcomes share), so
the scores the worker serves can be compared with it.

:meth:`ScoreReference.from_scores` cuts at quantiles (deciles by default). A cut is put
halfway between the two distinct scores it separates, never on a score: a served score that
differs from its training-time value in the last bits (float32 against float64) stays in its
bin. Tied scores never straddle a cut, so a model with few distinct scores gets fewer bins
(one per distinct score at most; a constant model one bin, no edges, and a PSI of 0).

:meth:`ScoreReference.psi` is the population stability index
``sum((a - e) * ln(a / e))`` over the bins, ``a`` the shares of the given scores and ``e`` the
reference's, each floored at :data:`PSI_FLOOR` so an empty bin gives a large but finite
term. Common reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a large one.

Pure Python (no numpy): reading a model's config loads nothing heavy.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.errors import ModelError

__all__ = ["DEFAULT_BINS", "PSI_FLOOR", "ScoreReference"]

DEFAULT_BINS = 10
# Share given to an empty bin (either side) in the PSI, so the index stays finite: one empty
# bin against a reference share of 0.1 adds (0.1 - 1e-4) * ln(0.1 / 1e-4) ~ 0.69.
PSI_FLOOR = 1e-4
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class ScoreReference:
    """Score bins (``edges``: interior cut points, ascending) and the share of reference
    scores in each (``shares``, ``len(edges) + 1`` of them, summing to 1), made from ``n``
    scores described by ``source``. Construction checks all of that (``ValueError``)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]
    n: int
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        object.__setattr__(self, "shares", tuple(float(s) for s in self.shares))
        if not all(math.isfinite(e) for e in self.edges):
            raise ValueError(f"edges must be finite numbers, got {list(self.edges)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges must be strictly ascending, got {list(self.edges)}")
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError(f"shares must have one more entry than edges ({len(self.edges)}), "
                             f"got {len(self.shares)}")
        if not all(0 <= s <= 1 for s in self.shares):
            raise ValueError(f"shares must be numbers in [0, 1], got {list(self.shares)}")
        if abs(math.fsum(self.shares) - 1) > _SUM_TOLERANCE:
            raise ValueError(f"shares must sum to 1, got {math.fsum(self.shares)!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an integer >= 1, got {self.n!r}")

    @classmethod
    def from_scores(cls, scores: Iterable[float], *, bins: int = DEFAULT_BINS,
                    source: str = "") -> ScoreReference:
        """The reference of ``scores``: cuts at the ``1/bins, ..., (bins-1)/bins`` quantiles
        (the smallest score whose share at or below it reaches the fraction), each moved
        halfway up to the next distinct score; cuts that coincide are kept once."""
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        values = sorted(float(s) for s in scores)
        if not values:
            raise ValueError("a score reference needs at least one score")
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a score reference needs finite scores")
        n = len(values)
        distinct = sorted(set(values))
        edges: list[float] = []
        for i in range(1, bins):
            q = values[(i * n + bins - 1) // bins - 1]  # ceil(i * n / bins) - 1
            j = bisect_right(distinct, q)
            if j < len(distinct):
                edge = (q + distinct[j]) / 2
                if not edges or edge > edges[-1]:
                    edges.append(edge)
        counts = [0] * (len(edges) + 1)
        for v in values:
            counts[bisect_left(edges, v)] += 1
        return cls(edges=tuple(edges), shares=tuple(c / n for c in counts), n=n, source=source)

    def bin_of(self, score: float) -> int:
        """The index of the bin ``score`` falls in (``0`` to ``len(edges)``)."""
        return bisect_left(self.edges, score)

    def counts(self, scores: Iterable[float]) -> list[int]:
        """How many of ``scores`` fall in each bin; non-finite scores are left out."""
        out = [0] * len(self.shares)
        for s in scores:
            s = float(s)
            if math.isfinite(s):
                out[bisect_left(self.edges, s)] += 1
        return out

    def psi(self, scores: Iterable[float]) -> float:
        """PSI of ``scores`` against this reference (see the module docstring); ``nan`` when
        there is no finite score."""
        return self.psi_of_counts(self.counts(scores))

    def psi_of_counts(self, counts: Sequence[int]) -> float:
        """PSI of scores given as bin counts (:meth:`counts`, or kept up to date with
        :meth:`bin_of` over a rolling window); ``nan`` when they add up to 0."""
        if len(counts) != len(self.shares):
            raise ValueError(f"expected {len(self.shares)} bin counts, got {len(counts)}")
        total = sum(counts)
        if total <= 0:
            return math.nan
        psi = 0.0
        for c, e in zip(counts, self.shares, strict=True):
            a, e = max(c / total, PSI_FLOOR), max(e, PSI_FLOOR)
            psi += (a - e) * math.log(a / e)
        return psi

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "shares": list(self.shares), "n": self.n,
                "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> ScoreReference:
        """Parse a ``score_reference`` section; every problem is a :class:`ModelError` that
        starts with ``where`` (the file and section)."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("edges", "shares", "n", "source") if k not in data]
        if missing:
            raise ModelError(f"{where}: missing keys {missing}")
        for key in ("edges", "shares"):
            value = data[key]
            if not isinstance(value, list) or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in value):
                raise ModelError(f"{where}: {key} must be a list of numbers, got {value!r}")
        if not isinstance(data["source"], str):
            raise ModelError(f"{where}: source must be a string, got {data['source']!r}")
        try:
            return cls(edges=tuple(data["edges"]), shares=tuple(data["shares"]), n=data["n"],
                       source=data["source"])
        except ValueError as exc:
            raise ModelError(f"{where}: {exc}") from None
