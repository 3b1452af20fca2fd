"""The anomaly detectors' state between batches: category price samples and alert cooldowns.

The interface (:class:`DetectorState`) and two implementations: on Redis, next to the windows
and in the same round trip (:class:`RedisDetectorState`), and in memory (tests, replays).
"""

from worker.anomaly.state.base import (
    CooldownState,
    DetectorState,
    Exchanged,
    PriceExchange,
    state_for,
)
from worker.anomaly.state.memory import MemoryDetectorState
from worker.anomaly.state.redis import RedisDetectorState

__all__ = [
    "CooldownState", "DetectorState", "Exchanged", "MemoryDetectorState", "PriceExchange",
    "RedisDetectorState", "state_for",
]
