"""Start-up waits for Kafka and Redis for the whole INTENT_STARTUP_TIMEOUT_S, not less."""

from __future__ import annotations

import time

import pytest

from worker.errors import ServiceUnavailable, StoreError
from worker.kafka.admin import ensure_topics
from worker.ops.stack import free_port
from worker.runtime import wait_for_redis


class DownStore:
    def __init__(self) -> None:
        self.pings: list[float] = []

    async def ping(self) -> None:
        self.pings.append(time.monotonic())
        raise StoreError("connection refused")


async def test_wait_for_redis_retries_until_the_timeout_has_passed():
    store = DownStore()
    t0 = time.monotonic()
    # backoff 0.2, 0.4, 0.8 would give up after 0.6 s if it stopped before a wait that overshoots
    with pytest.raises(ServiceUnavailable, match="not reachable after 1s"):
        await wait_for_redis(store, timeout_s=1.0)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 1.5
    assert store.pings[-1] - t0 >= 1.0  # a last try at the deadline
    gaps = [b - a for a, b in zip(store.pings, store.pings[1:], strict=False)]
    assert gaps[0] < gaps[1]  # backoff grows


async def test_ensure_topics_retries_until_the_timeout_has_passed(caplog):
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="check INTENT_KAFKA_BOOTSTRAP"):
        await ensure_topics([f"127.0.0.1:{free_port()}"], ["t"], partitions=1, timeout_s=1.0)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 3.0


def test_gc_threshold_is_raised_and_zero_leaves_python_s_default() -> None:
    import gc

    from worker.runtime import tune_gc
    from worker.settings import load_settings

    before = gc.get_threshold()
    try:
        tune_gc(load_settings(gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, *before[1:])
        gc.set_threshold(*before)
        tune_gc(load_settings(gc_threshold=0))
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
