"""Evaluation: metrics, reports with plots, and replay of a topic's time range.

Nothing heavy happens at import: matplotlib is imported only when a report is written.
"""

from worker.evaluation.metrics import compute_metrics
from worker.evaluation.replay import (
    ReplayRecord,
    ReplayReport,
    parse_time,
    read_topic_range,
    republish,
)
from worker.evaluation.report import write_report

__all__ = [
    "ReplayRecord",
    "ReplayReport",
    "compute_metrics",
    "parse_time",
    "read_topic_range",
    "republish",
    "write_report",
]
