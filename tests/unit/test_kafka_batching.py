"""The batching consumer's drain loop against a scripted fetch (no broker)."""

from __future__ import annotations

import asyncio

from faust.types import TP
from faust.types.tuples import ConsumerMessage

import worker.kafka.batching as batching
from worker.kafka.batching import BatchingApp

TOPIC = "clickstream"


class Fetcher:
    """What ``_drain_messages`` needs of Faust's fetcher: a stop flag."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def scripted(consumer, app, offsets: list[int]):
    """``consumer.getmany`` yields the given offsets once, then waits for its timeout."""
    queue = list(offsets)

    async def getmany(timeout: float):  # noqa: ASYNC109 - Faust's signature
        if not queue:
            await asyncio.sleep(min(timeout, 0.01))
            return
        while queue:
            offset = queue.pop(0)
            tp = TP(TOPIC, 0)
            yield tp, ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, 1, 1, tp,
                                      generation_id=app.consumer_generation_id)

    consumer.getmany = getmany


class Sink:
    """The channel put: records each handed batch (none reaches an agent here)."""

    def __init__(self) -> None:
        self.handed: list[tuple[int, list]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, item: tuple[int, list]) -> None:
        async with self._changed:
            self.handed.append(item)
            self._changed.notify_all()

    async def wait_for(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.handed) >= n)


def app_for(sink: Sink, **settings) -> BatchingApp:
    return BatchingApp("batching-test", broker="kafka://127.0.0.1:9", sink=sink, **settings)


async def drain(consumer, app, sink, until) -> None:
    consumer.resume_flow()
    app.flow_control.resume()
    fetcher = Fetcher()
    task = asyncio.ensure_future(consumer._drain_messages(fetcher))
    try:
        await asyncio.wait_for(until(), timeout=5)
    finally:
        fetcher._stopped.set()
        await asyncio.wait_for(task, timeout=5)


async def test_a_batch_is_cut_when_the_agent_asks_and_holds_what_arrived_meanwhile() -> None:
    sink = Sink()
    app = app_for(sink, batch_max=4, batch_wait_s=0.001)
    consumer = app.consumer
    app.consumer_generation_id = 1
    scripted(consumer, app, list(range(6)))
    handed = sink.handed

    async def until() -> None:
        app.want_batch()  # the agent is idle
        await sink.wait_for(1)
        await asyncio.sleep(0.1)  # the agent is busy: nothing more is handed over
        assert len(handed) == 1
        consumer.take(handed[0])
        app.want_batch()
        await sink.wait_for(2)

    await drain(consumer, app, sink, until)
    assert [[m.offset for m in batch] for _, batch in handed] == [[0, 1, 2, 3], [4, 5]]
    assert [seq for seq, _ in handed] == [1, 2]


async def test_a_batch_lost_on_the_way_to_the_agent_does_not_stall_the_consumer(monkeypatch):
    monkeypatch.setattr(batching, "LOST_AFTER_S", 0.1)
    sink = Sink()  # the first batch is cleared before the agent sees it: never taken
    app = app_for(sink, batch_max=2, batch_wait_s=0.001)
    consumer = app.consumer
    app.consumer_generation_id = 1
    scripted(consumer, app, [0, 1, 2, 3])

    async def until() -> None:
        app.want_batch()
        await sink.wait_for(2)  # asked again on the idle agent's behalf

    await drain(consumer, app, sink, until)
    assert [[m.offset for m in batch] for _, batch in sink.handed] == [[0, 1], [2, 3]]


def test_the_settings_are_constructor_arguments() -> None:
    sink = Sink()
    app = BatchingApp("batching-test", batch_max=8, batch_wait_s=0.01, fetch_max_wait_ms=100,
                      sink=sink)
    assert (app.batch_max, app.batch_wait_s, app.fetch_max_wait_ms) == (8, 0.01, 100)
    assert app.batch_sink is sink and app.batches is None
    own = BatchingApp("batching-test", batch_max=8)
    assert own.batch_sink is not None and own.batches is not None  # its own channel
    plain = BatchingApp("batching-test")  # message by message, like any Faust app
    assert plain.batch_sink is None and plain.batches is None
