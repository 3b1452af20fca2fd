"""Alerts and alert records (schemas/anomaly-alert.v1.json)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.events import format_ts

__all__ = ["Alert", "ModelRef", "alert_id", "alert_record"]


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The intent model whose score took part in an alert."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Alert:
    """One detected anomaly: the fields of an alert record, ``event_ts`` as epoch ms.

    Detectors build these from fixed inputs only, so the same window and state give the
    same alert, ``alert_id`` included. ``evidence`` holds ``event_ids`` (oldest first),
    the observed numbers and ``thresholds``.
    """

    alert_id: str
    user_id: str
    kind: str
    severity: str
    evidence: dict[str, Any]
    event_ts: int
    model: ModelRef | None = None

    @property
    def event_ids(self) -> list[str]:
        return self.evidence["event_ids"]


def alert_id(kind: str, user_id: str, event_ids: Sequence[str]) -> str:
    """Deterministic id: the same kind, user and firing events give the same id, so a
    replay or a redelivery never makes a new alert (consumers dedupe on it)."""
    h = hashlib.blake2b(digest_size=16, person=b"iw-anomaly-v1")
    h.update(kind.encode())
    h.update(b"\x00")
    h.update(user_id.encode())
    for eid in event_ids:
        h.update(b"\x00")
        h.update(eid.encode())
    return h.hexdigest()


def alert_record(alert: Alert, *, detected_at_ms: int | None = None) -> dict[str, Any]:
    """The anomaly-alert v1 record of ``alert``.

    ``detected_at_ms`` is the wall clock of the worker when it publishes; left out
    (replays, tests), ``detected_at`` is the event time, so the record is reproducible.
    """
    return {
        "alert_id": alert.alert_id,
        "user_id": alert.user_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "evidence": alert.evidence,
        "event_ts": format_ts(alert.event_ts),
        "detected_at": format_ts(alert.event_ts if detected_at_ms is None else detected_at_ms),
        "model": None if alert.model is None else {"name": alert.model.name,
                                                   "version": alert.model.version},
    }
