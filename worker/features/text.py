"""The window as text for the encoder: one short phrase per event, newest first.

Example (newest event first, ages relative to the newest event)::

    now: added to cart samsung galaxy a50, electronics smartphone, price 250 USD |
    2 min ago: searched "galaxy a50 case" |
    5 min ago: viewed electronics smartphone, apple, price 1082

The tokenizer truncates from the end, so a text longer than the token budget loses its
oldest events first; ``max_chars`` bounds the work before that. The phrases are
:func:`worker.features.phrase.event_phrase` with the exact price; the age is added here.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.features.facts import EVENT, LATER, PHRASE, TS, window_facts
from worker.features.phrase import event_phrase

SEPARATOR = " | "


def build_text(window: Sequence[dict], *, max_chars: int) -> str:
    """The window's events as phrases, newest first, at most ``max_chars`` characters.

    Events are added whole until the next one would not fit; the newest event is always
    there (cut to ``max_chars`` if it alone is longer). An empty window is a ValueError.
    """
    return facts_text(window_facts(window), max_chars=max_chars)


def facts_text(facts: Sequence[tuple], *, max_chars: int) -> str:
    """:func:`build_text` of a window's facts (:mod:`worker.features.facts`, oldest first);
    the phrase of each event that goes into the text is kept in its facts."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    newest_ts = facts[-1][TS]
    parts: list[str] = []
    used = 0
    for f in reversed(facts):
        later = f[LATER]
        phrase = later[PHRASE]
        if phrase is None:
            phrase = later[PHRASE] = event_phrase(f[EVENT], price="exact")
        phrase = f"{_age(newest_ts - f[TS])}: {phrase}"
        cost = len(phrase) + (len(SEPARATOR) if parts else 0)
        if used + cost > max_chars:
            if not parts:
                parts.append(phrase[:max_chars].rstrip())
            break
        parts.append(phrase)
        used += cost
    return SEPARATOR.join(parts)


def _age(ms: int) -> str:
    """A coarse age relative to the newest event: ``now``, ``40 s ago``, ``3 min ago``, ``2 h ago``,
    ``3 d ago``."""
    seconds = ms // 1000
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
