"""Per-partition event-time watermarks: how far event time has got on each input partition.

A partition's watermark is the newest event time accepted from it. Events of one user share a
partition (producers key by user_id), so once a partition's watermark has passed a score's
horizon by the allowed lateness, no purchase of that user inside the horizon is still to come,
except one later than the lateness allows: the score's outcome is then 0.

An event dated more than ``max_ahead_ms`` past the wall clock does not move a watermark: one
mis-dated event would otherwise close every open horizon of its partition at once. A
watermark starts at the first event seen after the worker starts or takes the partition over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

__all__ = ["Watermarks"]


class Watermarks:
    def __init__(self, *, lateness_ms: int, max_ahead_ms: int = 300_000) -> None:
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}")
        self.lateness_ms = lateness_ms
        self._max_ahead_ms = max_ahead_ms
        self._marks: dict[tuple[str, int], int] = {}

    def advance(self, seen: Mapping[tuple[str, int], Iterable[int]], *,
                now_ms: int | None = None) -> None:
        """Event times (ms) a batch accepted, by ``(topic, partition)``."""
        limit = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) + self._max_ahead_ms
        for key, times in seen.items():
            newest = max((ts for ts in times if ts <= limit), default=-1)
            if newest > self._marks.get(key, -1):
                self._marks[key] = newest

    def get(self, topic: str, partition: int) -> int | None:
        return self._marks.get((topic, partition))

    def cutoff(self, topic: str, partition: int) -> int | None:
        """Scores whose horizon ends before this (ms) have their outcome: the watermark less
        the lateness; ``None`` before the partition's first event."""
        mark = self._marks.get((topic, partition))
        return None if mark is None else mark - self.lateness_ms

    def forget(self, partitions) -> None:
        """Drop the watermarks of partitions this worker no longer owns."""
        for tp in partitions:
            self._marks.pop(tuple(tp), None)

    def cutoffs(self) -> dict[tuple[str, int], int]:
        """:meth:`cutoff` of every partition with a watermark."""
        return {key: mark - self.lateness_ms for key, mark in self._marks.items()}
