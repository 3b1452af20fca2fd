"""Score records (schemas/intent-score.v2.json: v1 plus an optional ``explanation``)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from worker.events import format_ts
from worker.features import FEATURE_NAMES
from worker.features.window import event_time_key

if TYPE_CHECKING:
    from worker.model.explain import Explanation


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
    explanation: dict | None = None,
) -> dict:
    """Build one score record for a user's events of one micro-batch.

    ``covered`` are the user's events in this batch (arrival order, unique ids);
    the newest of them by event time names the record. ``appended_at_ms`` is the
    Kafka timestamp of the newest covered message: latency runs from there.
    ``explanation`` (:func:`explanation_record`) is added when given.
    """
    newest = max(covered, key=event_time_key)
    event_ids = [e["event_id"] for e in covered]
    span_s = (window[-1]["ts"] - window[0]["ts"]) / 1000.0 if window else 0.0
    record = {
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
    if explanation is not None:
        record["explanation"] = explanation
    return record


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(60.0, max(-60.0, x))))


def explanation_record(explanation: Explanation, window: Sequence[dict]) -> dict:
    """The record's ``explanation`` of a window (oldest event first, as scored): features by
    name, events by id and type. Every number is a float as computed (no rounding), so
    ``baseline.logit + sum(features[].contribution) + other_features + events_total == logit``
    holds to float precision."""
    n = len(window)
    return {
        "logit": explanation.logit,
        "baseline": {"logit": explanation.baseline_logit,
                     "score": _sigmoid(explanation.baseline_logit)},
        "features": [{"name": FEATURE_NAMES[i], "value": value, "contribution": contribution}
                     for i, value, contribution in explanation.features],
        "other_features": explanation.other_features_logit,
        "events_total": explanation.events_logit,
        # position 0 is the newest event, the window's last
        "events": [{"event_id": window[n - 1 - pos]["event_id"],
                    "event_type": window[n - 1 - pos]["event_type"], "effect": effect}
                   for pos, effect in explanation.events if pos < n],
    }


def explained_window(window: Sequence[dict], explanation: dict) -> list[dict]:
    """A window's events newest first, as people read them next to an ``explanation`` record:
    id, type, event time, product id and the event's ``effect`` (None when it is not among the
    listed events)."""
    effects = {e["event_id"]: e["effect"] for e in explanation["events"]}
    return [{"event_id": e["event_id"], "event_type": e["event_type"], "ts": e["ts"],
             "product_id": (e.get("product") or {}).get("id"),
             "effect": effects.get(e["event_id"])} for e in reversed(window)]
