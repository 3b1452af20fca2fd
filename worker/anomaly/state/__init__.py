"""The anomaly detectors' state between batches: category price samples and alert cooldowns.

The interface (:class:`DetectorState`) and two implementations: on Redis, next to the windows
and in the same round trip (:class:`RedisDetectorState`), and in memory (tests, replays).
"""

from worker.anomaly.state.base import (
    CooldownState,
    DetectorState,
    Exchanged,
    PriceExchange,
)
from worker.anomaly.state.memory import MemoryDetectorState
from worker.anomaly.state.redis import RedisDetectorState
from worker.windows import MemoryWindowStore, RedisWindowStore, WindowStore

__all__ = [
    "CooldownState", "DetectorState", "Exchanged", "MemoryDetectorState", "PriceExchange",
    "RedisDetectorState", "state_for",
]


def state_for(windows: WindowStore) -> DetectorState:
    """The detector state kept beside ``windows`` (same backing store, same round trip)."""
    if isinstance(windows, RedisWindowStore):
        return RedisDetectorState(windows)
    if isinstance(windows, MemoryWindowStore):
        return MemoryDetectorState(windows)
    raise TypeError(f"no detector state for a {type(windows).__name__}: pass one")
