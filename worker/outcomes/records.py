"""Outcome records (schemas/intent-outcome.v1.json)."""

from __future__ import annotations

from worker.events import format_ts
from worker.outcomes.tracker import Outcome

__all__ = ["outcome_record"]


def outcome_record(outcome: Outcome, *, user_id: str, produced_at: str) -> dict:
    """``produced_at``: RFC 3339 (:func:`~worker.events.format_ts`), one per batch."""
    p = outcome.pending
    record = {
        "score_id": p.score_id,
        "user_id": user_id,
        "event_id": p.event_id,
        "event_ts": format_ts(p.ts),
        "model": {"name": p.model[0], "version": p.model[1]},
        "score": p.score,
        "label": outcome.label,
        "horizon_s": p.horizon_ms // 1000,
        "resolved_by": outcome.resolved_by,
        "resolved_ts": format_ts(outcome.resolved_ts),
        "produced_at": produced_at,
    }
    if p.shadow is not None:
        record["shadow"] = {"name": p.shadow[0], "version": p.shadow[1], "score": p.shadow[2]}
    return record
