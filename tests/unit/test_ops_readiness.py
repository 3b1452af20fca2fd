"""Readiness (GET /ready and every scrape) and the gauge it sets, against a fake store."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from worker.errors import StoreError
from worker.ops.metrics import Metrics
from worker.ops.pages import Readiness


@dataclass
class Model:
    name: str = "intent-minilm"
    version: str = "2.0.0"


class FakeStore:
    """Answers, raises (Redis down) or hangs (Redis stuck), as told."""

    def __init__(self) -> None:
        self.mode = "answers"
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.mode == "raises":
            raise StoreError("redis ping failed: ConnectionError: refused")
        if self.mode == "hangs":
            await asyncio.Event().wait()


def ready_line(metrics: Metrics) -> str:
    lines = [ln for ln in metrics.render().decode().splitlines() if ln.startswith("intent_ready")]
    assert len(lines) == 1, lines
    return lines[0]


def readiness(store: FakeStore, *, model: Model | None = None, timeout_s: float = 0.2):
    metrics = Metrics()
    served = model or Model()
    check = Readiness(metrics, serving=lambda: served, ping_store=store.ping, timeout_s=timeout_s)
    return metrics, check


async def test_a_loaded_model_and_an_answering_store_are_ready() -> None:
    store = FakeStore()
    metrics, check = readiness(store)
    ok, body = await check.check()
    assert ok and body == {"status": "ready",
                           "model": {"name": "intent-minilm", "version": "2.0.0"}}
    assert ready_line(metrics) == "intent_ready 1.0"


async def test_a_store_that_raises_is_not_ready_and_says_why() -> None:
    store = FakeStore()
    metrics, check = readiness(store)
    assert (await check.check())[0]
    store.mode = "raises"
    ok, body = await check.check()
    assert not ok and body["status"] == "not ready" and "refused" in body["redis"]
    assert ready_line(metrics) == "intent_ready 0.0"


async def test_a_hanging_store_is_not_ready_after_the_timeout_not_later() -> None:
    store = FakeStore()
    store.mode = "hangs"
    metrics, check = readiness(store, timeout_s=0.3)
    t0 = time.monotonic()
    ok, body = await check.check()
    took = time.monotonic() - t0
    assert not ok and body["redis"] == "timeout"
    assert 0.3 <= took < 1.0
    assert ready_line(metrics) == "intent_ready 0.0"
    store.mode = "answers"  # the store is asked again at the next check
    assert (await check.check())[0] and store.pings == 2
    assert ready_line(metrics) == "intent_ready 1.0"


async def test_no_model_is_not_ready_without_asking_the_store() -> None:
    store = FakeStore()
    metrics = Metrics()
    check = Readiness(metrics, serving=lambda: None, ping_store=store.ping)
    ok, body = await check.check()
    assert not ok and body["model"] is None and store.pings == 0
    assert ready_line(metrics) == "intent_ready 0.0"


def test_ready_is_exported_as_0_before_any_check() -> None:
    assert ready_line(Metrics()) == "intent_ready 0.0"
