"""A score waiting for its outcome, as kept in the user's pending hash.

The hash ``{prefix}:{<tag>}:o`` maps a score_id to either a pending entry (:func:`pack`) or a
done marker (``-<ts>``): a resolved score stays marked for a while, so a redelivered batch that
scores the same events again (same score_id) does not wait for a second outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["DONE", "Pending", "done_marker", "marker_ts", "pack", "unpack"]

DONE = b"-"


@dataclass(frozen=True, slots=True)
class Pending:
    """One published score of an example window (its newest event not a purchase).

    ``ts`` is the event time (ms) of the window's newest event, where the horizon starts;
    ``shadow`` is the shadow model's ``(name, version, score)`` of the same window, if any.
    """

    score_id: str
    tag: str  # the user's hash tag (the user id, escaped, or its pseudonym)
    event_id: str
    ts: int
    horizon_ms: int
    score: float
    model: tuple[str, str]
    shadow: tuple[str, str, float] | None = None

    @property
    def due_ms(self) -> int:
        """The end of the horizon: a purchase after this no longer counts."""
        return self.ts + self.horizon_ms


def pack(p: Pending) -> bytes:
    """The hash value of a pending entry (the tag and score_id are the key and the field)."""
    return orjson.dumps([p.event_id, p.ts, p.horizon_ms, p.score, *p.model,
                         *(p.shadow if p.shadow is not None else ())])


def unpack(score_id: str, tag: str, raw: bytes) -> Pending | None:
    """The entry of a hash value; ``None`` for a done marker or a value this version cannot
    read (treated as done: never an outcome from a guess)."""
    if raw[:1] == DONE:
        return None
    try:
        v = orjson.loads(raw)
        shadow = (str(v[6]), str(v[7]), float(v[8])) if len(v) >= 9 else None
        return Pending(score_id, tag, str(v[0]), int(v[1]), int(v[2]), float(v[3]),
                       (str(v[4]), str(v[5])), shadow)
    except (orjson.JSONDecodeError, IndexError, TypeError, ValueError):
        return None


def done_marker(ts: int) -> bytes:
    """The value left once an entry is resolved: its event time, for clean-up."""
    return DONE + str(ts).encode()


def marker_ts(raw: bytes) -> int | None:
    """Event time of a done marker (``None`` for anything else)."""
    if raw[:1] != DONE:
        return None
    try:
        return int(raw[1:])
    except ValueError:
        return None
