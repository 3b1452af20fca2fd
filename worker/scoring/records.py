"""Score records (schemas/intent-score.v1.json)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from worker.events import format_ts
from worker.features.window import event_time_key


def score_id(model_version: str, event_ids: Sequence[str]) -> str:
    """Deterministic id of a score: the same model over the same events gives the same id.

    Consumers dedupe on it after a redelivery (delivery is at-least-once).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(model_version.encode())
    for eid in event_ids:
        h.update(b"\x00")
        h.update(eid.encode())
    return h.hexdigest()


def score_record(
    *,
    user_id: str,
    covered: Sequence[dict],
    window: Sequence[dict],
    score: float,
    model_name: str,
    model_version: str,
    scored_at_ms: int,
    appended_at_ms: int,
) -> dict:
    """Build one score record for a user's events of one micro-batch.

    ``covered`` are the user's events in this batch (arrival order, unique ids);
    the newest of them by event time names the record. ``appended_at_ms`` is the
    Kafka timestamp of the newest covered message: latency runs from there.
    """
    newest = max(covered, key=event_time_key)
    event_ids = [e["event_id"] for e in covered]
    span_s = (window[-1]["ts"] - window[0]["ts"]) / 1000.0 if window else 0.0
    return {
        "score_id": score_id(model_version, event_ids),
        "user_id": user_id,
        "session_id": newest.get("session_id"),
        "event_id": newest["event_id"],
        "event_ids": event_ids,
        "score": min(1.0, max(0.0, float(score))),
        "model": {"name": model_name, "version": model_version},
        "window": {"events": max(1, len(window)), "span_s": span_s},
        "event_ts": format_ts(newest["ts"]),
        "scored_at": format_ts(scored_at_ms),
        "latency_ms": max(0, scored_at_ms - appended_at_ms),
    }
