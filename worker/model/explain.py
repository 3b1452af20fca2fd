"""Explanations of the pooled window model's scores, exact because its head is linear.

For one window the logit splits into three parts that add up to it exactly:

- the **baseline**: the logit of an empty context (every context feature 0, which is "none" for
  every feature, as they are log1p counts, flags and differences; no events, so the pooled
  statistics are 0): the head's bias;
- each **context feature**'s contribution: its value times its weight;
- the **events**' part: the pooled statistics' terms (``mean``, ``newest``, ``cos``).

The events' part is not a sum over events (the statistics are normalised and the cosine is not
linear), so each event is judged by leaving it out instead: the window is pooled again without
it, from the same layer-normalised vectors and with the same context features, and its
**effect** is the score with it minus the score without it (positive: the event raised the
score). :func:`leave_one_out_logits` does this for every event of a batch in closed form, a few
dot products per event; it equals :func:`~worker.model.pooled.pool` on each shortened window
(a unit test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.model.pooled import PooledHead, PooledStats, pool

__all__ = ["Explanation", "explain_batch", "leave_one_out_logits"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one window got its score (module doc).

    ``baseline_logit + sum of every feature's contribution + events_logit == logit``;
    ``features`` holds the ``top`` largest contributions by magnitude as (feature index, value,
    contribution) and ``other_features_logit`` the sum of the rest. ``events`` holds the ``top``
    events with the largest effects by magnitude as (position, effect on the score), position 0
    being the newest event.
    """

    logit: float
    baseline_logit: float
    features: tuple[tuple[int, float, float], ...]
    other_features_logit: float
    events_logit: float
    events: tuple[tuple[int, float], ...]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def leave_one_out_logits(head: PooledHead, rows: Sequence[Sequence[int]],
                         ages_s: Sequence[Sequence[float]], vectors: np.ndarray,
                         half_life_s: float, features: np.ndarray) -> np.ndarray:
    """The logit of each window without each of its events, flat: window 0's events newest
    first, then window 1's, and so on. Arguments as for :func:`~worker.model.pooled.pool` and
    :meth:`PooledHead.logits`; a one-event window without its event is the empty window (its
    pooled statistics 0)."""
    n = len(rows)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    if n == 0:
        return np.empty(0)
    if lengths.min() < 1:
        raise ValueError("an empty window has no events to leave out")
    total = int(lengths.sum())
    flat = np.fromiter((r for window in rows for r in window), dtype=np.int64, count=total)
    ages = np.fromiter((a for window in ages_s for a in window), dtype=np.float64, count=total)
    owner = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    size = lengths[owner]
    first = np.zeros(total, dtype=bool)
    first[starts] = True

    v = np.asarray(vectors, dtype=np.float64)
    m = (v @ head.mean_weight)[flat]
    u = (v @ head.newest_weight)[flat]
    # recency-weighted mean without the event: the window's sums less its own share
    raw = np.power(0.5, ages / half_life_s)
    w_all = np.add.reduceat(raw, starts)[owner]
    s_all = np.add.reduceat(raw * m, starts)[owner]
    w_rest = w_all - raw
    mean_term = np.divide(s_all - raw * m, w_rest, out=np.zeros(total),
                          where=(size > 1) & (w_rest > 0))
    # the newest event without it: the second newest when it is the newest
    second = np.minimum(starts + 1, total - 1)
    u_second = np.where(lengths > 1, u[second], 0.0)
    newest_term = np.where(first, u_second[owner], u[starts][owner])
    # cosine of the newest event to the sum of the others, from each event's dot products with
    # its window's newest vector and sum of the others (einsum: row-wise, no BLAS threads)
    from scipy.sparse import csr_matrix

    ev = v[flat]
    newest_vec = ev[starts]
    rest_flag = (~first).astype(np.float64)
    rest_vec = np.asarray(csr_matrix((rest_flag, (owner, flat)), shape=(n, len(v))) @ v)
    a = np.einsum("ij,ij->i", ev, newest_vec[owner])  # event . newest
    b = np.einsum("ij,ij->i", ev, rest_vec[owner])  # event . rest
    c = np.einsum("ij,ij->i", ev, ev)  # |event|^2
    nr = np.einsum("ij,ij->i", newest_vec, rest_vec)[owner]  # newest . rest
    rr = np.einsum("ij,ij->i", rest_vec, rest_vec)[owner]  # |rest|^2
    nn = c[starts][owner]  # |newest|^2
    b2, c2 = b[second][owner], c[second][owner]  # the second newest's b and c
    dot = np.where(first, b2 - c2, nr - a)
    new_nn = np.where(first, c2, nn)
    new_rr = np.where(first, rr - 2 * b2 + c2, rr - 2 * b + c)
    norms = np.sqrt(np.maximum(new_nn, 0.0) * np.maximum(new_rr, 0.0))
    cos = np.divide(dot, norms, out=np.zeros(total), where=(norms > 1e-12) & (size > 2))

    base = np.asarray(features, dtype=np.float64) @ head.feature_weight + head.bias
    out = base[owner] + mean_term + newest_term + cos * head.cos_weight
    # where the left-out event held almost all of the recency weight, the difference above
    # loses the others' digits: pool those shortened windows directly
    fragile = np.flatnonzero((size > 1) & (w_rest < 1e-9 * w_all))
    if len(fragile):
        out[fragile] = _pooled_without(head, rows, ages_s, v, half_life_s, base, owner, starts,
                                       fragile)
    return out


def _pooled_without(head: PooledHead, rows: Sequence[Sequence[int]],
                    ages_s: Sequence[Sequence[float]], vectors: np.ndarray, half_life_s: float,
                    base: np.ndarray, owner: np.ndarray, starts: np.ndarray,
                    which: np.ndarray) -> np.ndarray:
    short_rows, short_ages, windows = [], [], []
    for k in which.tolist():
        w = int(owner[k])
        j = k - int(starts[w])
        r, ages = list(rows[w]), list(ages_s[w])
        del r[j], ages[j]
        short_rows.append(r)
        short_ages.append([x - ages[0] for x in ages])
        windows.append(w)
    stats: PooledStats = pool(short_rows, short_ages, vectors, half_life_s)
    return (base[windows] + stats.mean @ head.mean_weight + stats.newest @ head.newest_weight
            + stats.cos * head.cos_weight)


def explain_batch(head: PooledHead, rows: Sequence[Sequence[int]],
                  ages_s: Sequence[Sequence[float]], vectors: np.ndarray, half_life_s: float,
                  features: np.ndarray, logits: np.ndarray, *, top: int) -> list[Explanation]:
    """One :class:`Explanation` per window of a scored batch (``logits`` from
    :meth:`PooledHead.logits` on the same inputs), with the ``top`` features and events."""
    features = np.asarray(features, dtype=np.float64)
    n = len(rows)
    if n == 0:
        return []
    contrib = features * head.feature_weight
    feature_logit = contrib.sum(axis=1)
    k = min(top, features.shape[1])
    picked = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    shown = np.take_along_axis(contrib, picked, axis=1)
    values = np.take_along_axis(features, picked, axis=1)
    other = feature_logit - shown.sum(axis=1)
    logits = np.asarray(logits, dtype=np.float64)
    events_logit = logits - head.bias - feature_logit

    loo = leave_one_out_logits(head, rows, ages_s, vectors, half_life_s, features)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    owner = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    effects = _sigmoid(logits)[owner] - _sigmoid(loo)
    # every window's events by falling |effect| (stable: ties keep the newer first), its first
    # ``top`` of them kept
    order = np.lexsort((-np.abs(effects), owner))
    rank = np.arange(len(order)) - starts[owner[order]]
    kept = order[rank < top]
    positions = (kept - starts[owner[kept]]).tolist()
    kept_effects = effects[kept].tolist()
    bounds = np.concatenate([[0], np.cumsum(np.minimum(lengths, top))]).tolist()

    f_idx, f_val, f_con = picked.tolist(), values.tolist(), shown.tolist()
    logit_list, other_list, events_list = logits.tolist(), other.tolist(), events_logit.tolist()
    bias = float(head.bias)
    out: list[Explanation] = []
    for i in range(n):
        a, b = bounds[i], bounds[i + 1]
        out.append(Explanation(
            logit=logit_list[i], baseline_logit=bias,
            features=tuple(zip(f_idx[i], f_val[i], f_con[i], strict=True)),
            other_features_logit=other_list[i], events_logit=events_list[i],
            events=tuple(zip(positions[a:b], kept_effects[a:b], strict=True))))
    return out
