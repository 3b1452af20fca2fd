"""SIGTERM drain: the batch in flight finishes before Faust stops (``drain_in_flight``)."""

from __future__ import annotations

import asyncio

from worker.runtime import drain_in_flight, graceful_worker_class


class FakeConsumer:
    def __init__(self, unacked: set[str]) -> None:
        self.unacked = unacked
        self.paused: set[int] | None = None

    def assignment(self) -> set[int]:
        return {0, 1}

    def pause_partitions(self, tps: set[int]) -> None:
        self.paused = set(tps)


class FakeFlowControl:
    suspended = False

    def suspend(self) -> None:
        self.suspended = True


async def test_drain_pauses_intake_and_waits_for_the_batch_in_flight():
    consumer, flow = FakeConsumer({"m1", "m2"}), FakeFlowControl()

    async def agent_acks_later() -> None:
        await asyncio.sleep(0.2)
        assert consumer.paused == {0, 1} and flow.suspended  # intake stopped before the wait
        consumer.unacked.clear()

    acker = asyncio.ensure_future(agent_acks_later())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await drain_in_flight(consumer, flow, timeout_s=5, poll_s=0.01)
    assert loop.time() - t0 >= 0.2
    await acker


async def test_drain_gives_up_after_the_timeout():
    consumer = FakeConsumer({"stuck"})
    assert not await drain_in_flight(consumer, FakeFlowControl(), timeout_s=0.1, poll_s=0.01)
    assert consumer.unacked == {"stuck"}


async def test_drain_returns_at_once_when_nothing_is_in_flight():
    assert await drain_in_flight(FakeConsumer(set()), FakeFlowControl(), timeout_s=0.0)


def test_worker_class_keeps_faust_worker_name_for_logs():
    import faust

    cls = graceful_worker_class()
    assert issubclass(cls, faust.Worker)
    assert cls.__name__ == "Worker"
