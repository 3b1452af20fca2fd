"""Raw Kafka message value -> normalised click event (see docs/contracts.md).

This runs once per event in the hot path: cheap checks first, the schema validator
(compiled once, cached) only on a decoded object, and the detail of a failure is built
only when there is one.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import orjson

from worker.errors import BadEvent
from worker.events.schemas import validate

__all__ = ["EVENT_TYPES", "TS_MAX_MS", "TS_MIN_MS", "epoch_ms", "format_ts", "parse_event"]

SCHEMA = "click-event.v1"
EVENT_TYPES = frozenset({"view", "search", "add_to_cart", "remove_from_cart", "purchase", "review"})
TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_event(raw: bytes | None, *, max_bytes: int) -> dict:
    """Decode, validate and normalise one event; raise ``BadEvent(reason, detail)``.

    Checks, in order: empty, too_large, invalid_utf8, invalid_json, schema_violation
    (not an object), unknown_event_type, schema_violation, invalid_timestamp. The
    result is the decoded object with ``ts`` as int epoch ms (UTC) and
    ``product.price`` as float.
    """
    if not raw:
        raise BadEvent("empty", "message has no value")
    if len(raw) > max_bytes:
        raise BadEvent("too_large", f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects invalid UTF-8 too; tell the two apart only on this slow path.
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise BadEvent("invalid_utf8", f"byte {uexc.start}: {uexc.reason}") from None
        raise BadEvent("invalid_json", str(exc)[:300]) from None
    if type(doc) is not dict:
        raise BadEvent("schema_violation", f"$: expected a JSON object, got {_kind(doc)}")
    event_type = doc.get("event_type")
    if type(event_type) is str and event_type not in EVENT_TYPES:
        raise BadEvent("unknown_event_type", f"$.event_type: {event_type[:64]!r}")
    validate(SCHEMA, doc)
    ts = doc["ts"]
    doc["ts"] = _ts_ms(ts) if type(ts) is str else int(ts)
    product = doc.get("product")
    if product is not None and type(product.get("price")) is int:
        product["price"] = float(product["price"])
    return doc


def format_ts(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds, e.g. ``2019-10-01T00:00:00.000Z``.

    Every record carries a few of these, mostly of the same seconds: the seconds part is
    formatted once per second (a small LRU), the milliseconds appended."""
    return f"{_format_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _format_second(s: int) -> str:
    return f"{_EPOCH + timedelta(seconds=s):%Y-%m-%dT%H:%M:%S}"


def epoch_ms(dt: datetime) -> int:
    """A timezone-aware datetime -> int epoch milliseconds (sub-millisecond part dropped)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: a timezone is required")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _ts_ms(text: str) -> int:
    # The schema pattern already guarantees the shape and an explicit offset or Z.
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadEvent("invalid_timestamp", f"$.ts: {text!r}: {exc}") from None
    ms = epoch_ms(dt)
    if not TS_MIN_MS <= ms <= TS_MAX_MS:
        raise BadEvent("invalid_timestamp", f"$.ts: {text!r} is outside 2000-01-01..2100-01-01")
    return ms


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
