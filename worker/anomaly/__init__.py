"""Anomaly alerts: pure detectors over a user's window, cooldown, alert records.

Nothing here does I/O or reads a clock; the pipeline (later) feeds the windows, the
category statistics and the cooldown state from Redis and publishes the records.
"""

from worker.anomaly.alerts import Alert, ModelRef, alert_id, alert_record
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
    "KINDS", "SEVERITIES", "Alert", "OocCandidate", "CategoryStats", "Cooldown", "CooldownEntry",
    "DetectorConfig", "ModelRef", "alert_id", "alert_record", "detect_all", "detect_bot_cadence",
    "detect_out_of_character", "detect_price_outlier", "detect_purchase_velocity",
    "ooc_candidates", "update_category_stats",
]
