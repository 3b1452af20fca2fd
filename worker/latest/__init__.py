"""Each user's newest score record in Redis, for lookups at request time.

:func:`latest_score` is what a recommendation service calls; the worker writes the records
through :class:`WriteBehind` after they were published (:class:`RedisLatestScores`, one
compare-on-event-time script). Key layout and rules: :mod:`worker.latest.store`.
"""

from worker.latest.store import (
    KEEP_NEWER_SCRIPT,
    LATEST,
    LatestScore,
    RedisLatestScores,
    latest_score,
    latest_score_key,
    stored_record,
)
from worker.latest.writer import LatestScoreStore, WriteBehind

__all__ = [
    "KEEP_NEWER_SCRIPT", "LATEST", "LatestScore", "LatestScoreStore", "RedisLatestScores",
    "WriteBehind", "latest_score", "latest_score_key", "stored_record",
]
