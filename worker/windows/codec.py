"""Event (de)serialisation and parameter checks shared by the window stores.

A stored payload is the orjson serialisation of the event *without* its
``user_id``: the store knows the user from the batch key, so the raw id never
has to be written (with pseudonymised keys, Redis then holds no raw user id
at all) and every payload is a little smaller. Decoding puts it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

import orjson

from worker.caching import Generations

__all__ = ["DecodedEvents", "check_limits", "decode_window", "encode_event", "join_payloads"]

_OWNER = itemgetter("user_id")

# Redis scores and Lua numbers are doubles: integers beyond 2**53 lose precision.
_MAX_EXACT = 2**53


def encode_event(event: dict, user_id: str) -> tuple[int, str, bytes]:
    """``(ts, event_id, payload)`` of a normalised event of ``user_id``.

    Raise ``ValueError`` if it is not one: missing or non-int ``ts``, empty or
    non-string ``event_id``, or a ``user_id`` other than the batch key (events
    routed to the wrong window would otherwise be silently mixed).
    """
    try:
        ts = event["ts"]
        event_id = event["event_id"]
        owner = event["user_id"]
    except (KeyError, TypeError):
        raise ValueError(
            f"not a normalised event (needs ts, event_id, user_id): {event!r:.200}"
        ) from None
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"event_id must be a non-empty string, got {event_id!r}")
    if type(ts) is not int or not -_MAX_EXACT <= ts <= _MAX_EXACT:
        raise ValueError(f"event {event_id!r}: ts must be int epoch milliseconds, got {ts!r}")
    if owner != user_id:
        raise ValueError(f"event {event_id!r} of user {owner!r} was batched under user {user_id!r}")
    payload = orjson.dumps({k: v for k, v in event.items() if k != "user_id"})
    return ts, event_id, payload


def decode_window(blob: bytes | str, user_id: str) -> list[dict]:
    """Fresh event dicts from a JSON array of stored payloads, ``user_id`` restored.

    One ``orjson.loads`` per window, not per event: with ~100 windows of 50 events
    per batch, per-call overhead otherwise dominates the store's client-side time.
    """
    window = orjson.loads(blob)
    for event in window:
        event["user_id"] = user_id
    return window


class DecodedEvents:
    """Decoded events by stored payload, for windows that come back whole batch after batch.

    The store returns a user's whole window (up to ``INTENT_WINDOW_MAX_EVENTS`` payloads) each
    time a batch touches the user, so an active user's events are decoded again and again;
    here each payload is decoded once while it stays in use. Only payloads that Redis returned
    are ever looked up, so a forgotten or expired window cannot come back from the cache.

    Bounded: a :class:`~worker.caching.Generations` of ``size`` payloads; ``size=0`` turns the
    cache off.

    The returned event dicts are shared between windows and batches: callers must not modify
    them (nothing in the worker does; :func:`decode_window` gives fresh ones).
    """

    __slots__ = ("_cache", "_other")

    def __init__(self, size: int) -> None:
        self._cache: Generations[bytes | str, dict] = Generations(size)
        self._other = 0  # payloads found, but decoded for another user

    @property
    def size(self) -> int:
        return self._cache.size

    @property
    def hits(self) -> int:
        return self._cache.hits - self._other

    @property
    def misses(self) -> int:
        return self._cache.misses + self._other

    def window(self, payloads: list[bytes | str], user_id: str) -> list[dict]:
        """The events of one window's payloads (oldest first), ``user_id`` restored."""
        cache = self._cache
        if not cache.size:
            return decode_window(join_payloads(payloads), user_id)
        events: list = cache.get_many(
            payloads, lambda missing: decode_window(join_payloads(missing), user_id))
        # the same payload stored for another user (it holds no user id): decode it for this one
        owners = list(map(_OWNER, events))
        if owners.count(user_id) != len(owners):
            at = [i for i, owner in enumerate(owners) if owner != user_id]
            keys = [payloads[i] for i in at]
            decoded = decode_window(join_payloads(keys), user_id)
            for i, event in zip(at, decoded, strict=True):
                events[i] = event
            cache.put_many(keys, decoded)
            self._other += len(at)
        return events


def join_payloads(payloads: Iterable[bytes | str]) -> bytes | str:
    """The JSON array of stored payloads (``str`` ones from a ``decode_responses`` client)."""
    items = list(payloads)
    if items and isinstance(items[0], str):
        return "[" + ",".join(items) + "]"
    return b"[" + b",".join(items) + b"]"


def check_limits(*, max_events: int, span_ms: int, ttl_s: int | None) -> None:
    if max_events < 1:
        raise ValueError(f"max_events must be >= 1, got {max_events}")
    if span_ms < 0:
        raise ValueError(f"span_ms must be >= 0, got {span_ms}")
    if ttl_s is not None and ttl_s < 1:
        raise ValueError(f"ttl_s must be >= 1, got {ttl_s}")
