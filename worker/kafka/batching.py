"""Faust's aiokafka consumer, handing the agent whole micro-batches instead of single messages.

Faust delivers every consumed message on its own: a ``wait_first`` with four futures, an
``Event``, a queue put, a stream step and an acknowledgement per message. For a worker that
works in micro-batches anyway, that bookkeeping costs several times what a plain aiokafka loop
spends per message. :class:`BatchingConsumer` keeps all of Faust's consumer (group
membership, rebalancing, offset tracking and commits, flow control, the fetcher thread) and
changes only the drain loop: it collects fetched messages and, when the agent asks for the
next batch (:meth:`BatchingApp.want_batch`), hands over up to ``batch_max`` of them, waiting
at most ``batch_wait_s`` after the first one for more, as one list on a Faust channel. The
agent takes the batch (:meth:`BatchingConsumer.take`: messages of an older generation are
skipped, the rest marked in flight, as Faust's stream does per message) and acknowledges each
message with ``consumer.ack`` once its outputs are handed to the producer; Faust commits
acknowledged offsets as it does for its own streams.

While the agent is busy, fetched messages keep joining the next batch until it asks (so an
event waits at most for the batch in progress and its own), and the drain loop stops fetching
once ``batch_max`` are waiting: aiokafka's prefetch buffer is then the only one that fills, and it
is bounded. A rebalance or a stop drops what was not handed over and waits for the batch in
progress; the dropped messages were not acknowledged, so they are consumed again from the
committed offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

BatchSink = Callable[[tuple[int, list[Any]]], Awaitable[None]]
POLL_S = 0.02  # fetch timeout while a due batch waits for the busy agent
LOST_AFTER_S = 2.0  # a handed batch the idle agent has not taken by then was dropped


class BatchingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the fetch wait of :attr:`BatchingApp.fetch_max_wait_ms`.

    Faust hard-codes ``fetch_max_wait_ms=1500``: how long the broker may hold a fetch that
    finds no data. Kafka answers as soon as data arrives; the embedded Tansu broker holds the
    fetch to the end of the wait, which then adds up to that much to every score at low load.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = self.app.fetch_max_wait_ms
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read when the consumer starts
        return consumer


class BatchingConsumer(faust_aiokafka.Consumer):
    """Drains fetched records into micro-batches for :attr:`BatchingApp.batch_sink`."""

    def _new_consumer_thread(self) -> BatchingConsumerThread:
        return BatchingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def take(self, handed: tuple[int, list[Any]]) -> list[Any]:
        """The messages of a handed-over batch that are still this worker's, now in flight.

        As Faust's stream does per message: a message fetched before a rebalance (another
        generation) or while the flow is stopped is skipped, not processed (the new owner of
        its partition consumes it from the committed offset); the rest are tracked, so a
        rebalance or stop waits for their acknowledgement (``ack``) before committing.
        """
        app = self.app
        seq, batch = handed
        app.batches_taken = max(app.batches_taken, seq)
        if not app.flow_control.is_active():
            return []
        generation = app.consumer_generation_id
        taken = [m for m in batch if m.generation_id == generation]
        track = self.track_message
        for message in taken:
            track(message)
        # Faust's livelock check reads when a stream last took a message, per partition
        now = time.monotonic()
        app.monitor.stream_inbound_time.update((tp, now) for tp in {m.tp for m in taken})
        return taken

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        app = self.app
        sink: BatchSink | None = app.batch_sink
        if sink is None:  # a plain Faust app: message by message, as Faust does it
            await super()._drain_messages(fetcher)
            return
        batch_max: int = app.batch_max
        wait_s: float = app.batch_wait_s
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        pending: list[Any] = []
        first_at = 0.0
        wanted = app.batch_wanted()
        handed_generation, handed_at = app.consumer_generation_id, time.monotonic()
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if not self.flow_active:
                    # a rebalance or a stop: what was not handed over is fetched again from
                    # the committed offsets (Faust seeks there on assignment)
                    pending.clear()
                if app.batches_taken < app.batches_handed and not wanted.is_set() and (
                        app.consumer_generation_id != handed_generation
                        or time.monotonic() - handed_at > LOST_AFTER_S):
                    # the agent asked, but never got the batch handed to it: flow control cleared
                    # the channel or the stream skipped it in a rebalance. Its messages were not
                    # tracked (they are fetched again); ask for the next batch on its behalf.
                    handed_generation, handed_at = app.consumer_generation_id, time.monotonic()
                    wanted.set()
                full = len(pending) >= batch_max
                due = full or (pending and time.monotonic() - first_at >= wait_s)
                if full and not wanted.is_set():
                    # the agent is busy and the next batch is full: stop fetching (aiokafka's
                    # prefetch, bounded, is all that fills) until the agent asks
                    await self.wait_first(wanted.wait(), self.suspend_flow.wait(), timeout=1.0)
                    continue
                if not full:
                    if not pending:  # wait for the first message
                        timeout = 1.0
                    elif not due:  # then up to the batch wait for more
                        timeout = max(0.0, first_at + wait_s - time.monotonic())
                    else:  # keep fetching while the agent is busy; look up for its call often
                        timeout = 0.0 if wanted.is_set() else POLL_S
                    async for tp, message in self.getmany(timeout=timeout):
                        offset = message.offset
                        r_offset = read_offset.get(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # already read (Faust drops these the same way)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)  # e.g. compaction
                        read_offset[tp] = offset
                        if not pending:
                            first_at = time.monotonic()
                        pending.append(message)
                    if not (due and wanted.is_set()):
                        await self.sleep(0)
                        continue
                batch = pending[:batch_max]  # a stale generation's are skipped by take
                del pending[:batch_max]  # the rest (as old as the batch) goes with the next one
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                wanted.clear()
                # hand over, unless a rebalance or stop suspends the flow meanwhile
                app.batches_handed += 1
                handed_generation, handed_at = app.consumer_generation_id, time.monotonic()
                result = await self.wait_first(sink((app.batches_handed, batch)),
                                               self.suspend_flow.wait())
                if result.stopped or not self.flow_active:
                    wanted.set()  # not handed over (or about to be cleared): still wanted
                del batch  # not tracked yet: a cleared batch leaves no trace (see take)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:  # a stop, not a rebalance: as Faust's drain
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise


class BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """A Faust app whose consumer hands over lists of up to ``batch_max`` messages.

    The lists go to ``sink`` if given, else to the app's own channel :attr:`batches` (an agent
    reads it). Without ``batch_max`` the app consumes message by message like any Faust app.
    ``fetch_max_wait_ms``: how long the broker may hold a fetch that finds no data (``None``:
    Faust's 1500 ms).
    """

    def __init__(self, id: str, *, batch_max: int | None = None,  # noqa: A002 - Faust's name
                 batch_wait_s: float = 0.05, fetch_max_wait_ms: int | None = None,
                 sink: BatchSink | None = None, **options: Any) -> None:
        super().__init__(id, **options)
        self.batch_max = batch_max or 0
        self.batch_wait_s = batch_wait_s
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.batches: faust.ChannelT | None = None
        if batch_max and sink is None:
            self.batches = self.channel(maxsize=1)
            sink = self._hand_over
        self.batch_sink: BatchSink | None = sink if batch_max else None
        self._wanted: asyncio.Event | None = None
        self.batches_handed = 0  # sequence number of the last batch the drain loop handed over
        self.batches_taken = 0  # the highest one the agent received (BatchingConsumer.take)

    async def _hand_over(self, batch: tuple[int, list[Any]]) -> None:
        await self.batches.send(value=batch)

    def batch_wanted(self) -> asyncio.Event:
        """Set by the agent when it is ready for the next batch (:meth:`want_batch`)."""
        if self._wanted is None:
            self._wanted = asyncio.Event()
        return self._wanted

    def want_batch(self) -> None:
        """The agent is ready: the consumer cuts the next batch from what it has fetched."""
        self.batch_wanted().set()

    def _new_transport(self) -> faust_aiokafka.Transport:
        return BatchingTransport(self.conf.broker_consumer, self)
