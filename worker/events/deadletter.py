"""Build dead-letter v1 records for messages the worker rejects."""

from __future__ import annotations

import base64
import codecs
from datetime import datetime

from worker.events.parse import epoch_ms, format_ts

__all__ = ["KEY_MAX_BYTES", "REASONS", "dead_letter"]

REASONS = frozenset(
    {
        "invalid_json",
        "invalid_utf8",
        "schema_violation",
        "too_large",
        "unknown_event_type",
        "invalid_timestamp",
        "empty",
        "internal_error",
    }
)
DETAIL_MAX = 1024
KEY_MAX_BYTES = 1024


def dead_letter(
    *,
    raw: bytes | None,
    key: bytes | None,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    received_at: datetime,
    payload_max: int,
) -> dict:
    """A dead-letter v1 record (schemas/dead-letter.v1.json) for one rejected message.

    The payload keeps at most ``payload_max`` bytes of ``raw``: as text when they decode
    as UTF-8 (a character cut in half at the end is dropped), else as base64.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}")
    raw = bytes(raw or b"")
    kept = raw[: max(payload_max, 0)]
    truncated = len(kept) < len(raw)
    text = _utf8(kept, truncated)
    return {
        "reason": reason,
        "detail": detail if len(detail) <= DETAIL_MAX else detail[: DETAIL_MAX - 3] + "...",
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else bytes(key[:KEY_MAX_BYTES]).decode("utf-8", "replace"),
        "payload": text if text is not None else base64.b64encode(kept).decode("ascii"),
        "payload_encoding": "utf-8" if text is not None else "base64",
        "payload_bytes": len(raw),
        "truncated": truncated,
        "received_at": format_ts(epoch_ms(received_at)),
    }


def _utf8(data: bytes, truncated: bool) -> str | None:
    """``data`` as text, or None when it is not UTF-8; a cut through the last character
    of a truncated payload drops that character instead of falling back to base64."""
    try:
        if truncated:
            return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
