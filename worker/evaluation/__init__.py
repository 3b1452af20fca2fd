"""Evaluation: score a replay of events (a file or a topic range) with the model and the
GBDT baseline, and write a report with metrics and plots; re-publish a range for shadow
tests.

Nothing heavy happens at import: matplotlib is imported only when a report is written.
"""

from worker.evaluation.replay import ReplayReport, events_from_topic, republish
from worker.evaluation.report import write_report

__all__ = ["ReplayReport", "events_from_topic", "republish", "write_report"]
