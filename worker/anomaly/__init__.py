"""Anomaly alerts: pure detectors over a user's window, cooldown, alert records, and the
detectors' state between batches (:mod:`worker.anomaly.state`).

:class:`BatchDetector` runs them over one micro-batch: the one entry point of the worker's
pipeline and of the offline evaluation. Nothing but the state stores does I/O, and nothing
reads a clock.
"""

from worker.anomaly.alerts import Alert, ModelRef, alert_id, alert_record
from worker.anomaly.batch import BatchDetector, Detected, PriorWindow
from worker.anomaly.config import KINDS, SEVERITIES, DetectorConfig
from worker.anomaly.cooldown import Cooldown, CooldownEntry
from worker.anomaly.detectors import (
    OocCandidate,
    detect_all,
    detect_bot_cadence,
    detect_out_of_character,
    detect_price_outlier,
    detect_purchase_velocity,
    ooc_candidates,
)
from worker.anomaly.stats import CategoryStats, update_category_stats

__all__ = [
    "KINDS", "SEVERITIES", "Alert", "BatchDetector", "CategoryStats", "Cooldown", "CooldownEntry",
    "Detected", "OocCandidate", "PriorWindow",
    "DetectorConfig", "ModelRef", "alert_id", "alert_record", "detect_all", "detect_bot_cadence",
    "detect_out_of_character", "detect_price_outlier", "detect_purchase_velocity",
    "ooc_candidates", "update_category_stats",
]
