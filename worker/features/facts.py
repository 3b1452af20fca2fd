"""What the model inputs need of each event, computed once per event, and a cache of it.

A window's text and context features are built from *facts*: per event, the few values the
features read (time, type, log price, product, category, session) and, on demand, its text
phrase. None of them depends on the rest of the window, so an event that comes back in the
next batch's window (the window store returns a user's whole window every time) needs none
of them computed again: :class:`EventCache` keeps them between batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice
from operator import itemgetter, lt

from worker.caching import Generations

__all__ = ["EventCache", "window_facts"]

EVENT_TYPES = ("view", "search", "add_to_cart", "remove_from_cart", "purchase", "review")
KIND_CODES = {t: i for i, t in enumerate(EVENT_TYPES)}  # any other event type: len(EVENT_TYPES)
OTHER_KIND = len(EVENT_TYPES)

# The layout of one event's facts: a tuple (one object to read per event), whose last item
# is a list of what is filled in when first needed: the event's text phrase
# (worker.features.text), once the event is the newest of a window, the features that
# depend on the newest event alone (worker.features.context), and its event-vector phrase
# with the price mode it was rendered in (worker.features.sequence).
TS, KIND_CODE, LOG_PRICE, PRODUCT, CATEGORY, SESSION, EVENT, LATER = range(8)
PHRASE, NEWEST, VECTOR_PHRASE = range(3)  # in LATER


def event_facts(event: dict) -> tuple:
    """``(ts, event type code, log1p(price) or None, product id, category, session_id, event,
    [phrase, newest-only features, (price mode, vector phrase)])``, the last three None until
    needed.

    The price counts when it is a finite number >= 0 and not a bool (as the text's price).
    """
    product = event.get("product")
    log_price = product_id = category = None
    if product:  # an object when present (schema)
        product_id = product.get("id")
        category = product.get("category")
        price = product.get("price")
        if isinstance(price, int | float) and price is not True and price is not False \
                and math.isfinite(price) and price >= 0:
            log_price = math.log1p(float(price))
    return (event["ts"], KIND_CODES.get(event["event_type"], OTHER_KIND), log_price, product_id,
            category, event.get("session_id"), event, [None, None, None])


class EventCache:
    """Facts of window events between batches, for windows made of the same event dicts.

    The Redis window store hands out the same (read-only) event dicts batch after batch while
    their payloads stay in its decoded-event cache, so the facts are keyed by the dict itself:
    its ``id``, with the dict kept in the entry. While an entry exists its dict cannot be
    freed, so no other dict can have that ``id``; once the entry is dropped the ``id`` may be
    reused and is looked up afresh. The trap: a dict changed in place after it was cached would
    get stale facts; window events are read-only (docs/contracts.md). Windows of fresh dicts
    (the memory store, training) only miss, and the cache keeps up to ``2 * size`` of them alive
    (with Redis, the decoded-event cache holds the same dicts anyway).

    Bounded: a :class:`~worker.caching.Generations` of ``size`` events; ``size=0`` turns the
    cache off. One cache per pipeline; not thread-safe.
    """

    __slots__ = ("_cache",)

    def __init__(self, size: int) -> None:
        self._cache: Generations[int, tuple] = Generations(size)

    @property
    def size(self) -> int:
        return self._cache.size

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def misses(self) -> int:
        return self._cache.misses

    def facts(self, events: Sequence[dict]) -> list[tuple]:
        """The facts of each of ``events``, in their order."""
        cache = self._cache
        if not cache.size:
            return list(map(event_facts, events))
        # a hit is the event's own facts (see above)
        return cache.get_many(list(map(id, events)), _all_facts, events)  # type: ignore[return-value]


def _all_facts(events: Sequence[dict]) -> list[tuple]:
    return list(map(event_facts, events))


def window_facts(window: Sequence[dict], cache: EventCache | None = None) -> list[tuple]:
    """The facts of a window's events in event-time order (``ts``, then ``event_id``), as
    :func:`~worker.features.window.oldest_first` orders them; an empty window is a ValueError."""
    if not window:
        raise ValueError("empty window: nothing to build a model input from")
    facts = list(map(event_facts, window)) if cache is None else cache.facts(window)
    ts = list(map(itemgetter(TS), facts))
    if all(map(lt, ts, islice(ts, 1, None))):  # strictly increasing: nothing to sort
        return facts
    return sorted(facts, key=lambda f: (f[TS], f[EVENT].get("event_id", "")))
