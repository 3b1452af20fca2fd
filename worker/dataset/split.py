"""Splits: by user (a stable hash, no user in two parts) and by time (a report only)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from worker.dataset.examples import Example

__all__ = ["DEFAULT_SPLIT_SEED", "INNER_FRAC", "Part", "inner_user_split", "time_split",
           "user_fold", "user_split"]

DEFAULT_SPLIT_SEED = "intent-v1"
INNER_FRAC = 0.2
Part = Literal["train", "val", "test"]
_SCALE = float(1 << 64)


def user_split(user_id: str, *, seed: str = DEFAULT_SPLIT_SEED, val_frac: float = 0.2,
               test_frac: float = 0.0) -> Part:
    """The part of a user, from ``sha256(seed, user_id)``: the same on every machine and run.

    The hash maps the user to ``u`` in [0, 1): ``test`` if ``u < test_frac``, ``val`` if
    ``u < test_frac + val_frac``, else ``train``. Growing ``val_frac`` only moves users
    from train to val.
    """
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise ValueError(f"need val_frac, test_frac >= 0 and val_frac + test_frac < 1, "
                         f"got {val_frac}, {test_frac}")
    u = _unit(user_id, seed)
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


def user_fold(user_id: str, *, seed: str = DEFAULT_SPLIT_SEED, folds: int = 5) -> int:
    """The fold (0 .. folds-1) of a user, from the same hash as :func:`user_split`: with
    ``test_frac`` 0, fold 0 holds the users ``user_split`` puts in val when
    ``val_frac = 1 / folds``."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    return min(folds - 1, int(_unit(user_id, seed) * folds))


def inner_user_split(examples: Sequence[Example], *, seed: str = DEFAULT_SPLIT_SEED,
                     frac: float = INNER_FRAC) -> tuple[list[Example], list[Example]]:
    """``(fit, hold)``: the examples of a fit part split again by user, about ``frac`` of
    its users held out (for early stopping); every example of a user lands on one side.

    The hash is salted ``"<seed>/inner"``, so the held-out users are a fraction of *these*
    users whatever outer part (``user_split``, ``user_fold``, time split) they came from:
    with the outer seed itself, the train part of :func:`user_split` would hold no user
    with ``u < val_frac``. Order within each side is kept.
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    fit: list[Example] = []
    hold: list[Example] = []
    for e in examples:
        (hold if _unit(e.user_id, f"{seed}/inner") < frac else fit).append(e)
    return fit, hold


def _unit(user_id: str, seed: str) -> float:
    """``sha256(seed, user_id)`` mapped to [0, 1)."""
    digest = hashlib.sha256(f"{seed}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def time_split(examples: Sequence[Example], frac: float, *,
               horizon_s: int = 0) -> tuple[list[Example], list[Example], int]:
    """``(before, after, cut_ms)``: ``after`` holds the examples with ``ts >= cut_ms``, about
    the last ``frac`` of them by time; ``before`` those with ``ts < cut_ms`` and
    ``ts + horizon_s <= cut_ms``,
    so that no label used for fitting looks past the cut (examples in the gap are dropped).

    Users appear on both sides: this measures drift over time, not new users; report only.
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    if not examples:
        return [], [], 0
    times = sorted(e.ts for e in examples)
    cut = times[min(len(times) - 1, int(len(times) * (1 - frac)))]
    horizon_ms = horizon_s * 1000
    before = [e for e in examples if e.ts < cut and e.ts + horizon_ms <= cut]
    after = [e for e in examples if e.ts >= cut]
    return before, after, cut
