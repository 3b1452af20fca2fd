"""The agent's policy: how a micro-batch goes from consumed messages to acknowledged outputs.

:class:`BatchRunner` holds what the Faust agent does with a batch, free of Faust: prepare and
finish it (:class:`~worker.scoring.pipeline.Pipeline`), retry what may succeed again, isolate a
poisonous message, publish the records through a :class:`Producer`, acknowledge the batch, and
stop the process when the worker itself is broken. ``worker.app`` wires it to Faust.

The rules it keeps:

- A batch is acknowledged only after the broker took its records; an error never leaves the
  runner with the batch unacknowledged but counted as done.
- A retriable failure (Redis down) is retried with backoff, the batch held.
- A batch that fails for another reason is processed message by message and only the
  messages that still fail are dead-lettered. If every message fails the same way, the worker
  is broken, not the input: the process exits (code 70) without acknowledging the batch, so it
  is consumed again after a restart.
- Alerts are delivered before their cooldowns are recorded, so a redelivered batch finds them
  there and the fraud team does not get one twice.
- Score records are kept for lookups only once delivered, and in the background: the batch is
  acknowledged without waiting for that write, which can never fail it.
- Outcomes are delivered with the score records; only then are their scores recorded as
  resolved (and the batch's new scores as waiting), retried while Redis is down, so a
  redelivered batch gives no outcome twice and a score published is never left unresolved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeVar

from worker.backoff import retry
from worker.errors import IntentError
from worker.scoring.pipeline import BatchResult, Message, Output, Pipeline, Prepared

log = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_BROKEN = 70  # the worker, not its input, is broken (EX_SOFTWARE)


class SystemicFailure(IntentError):
    """Every message of a batch failed the same way on its own: the worker, not the input,
    is broken. Stop without acknowledging the batch (a restart retries it)."""


class Producer(Protocol):
    """Where the runner's records go."""

    async def send(self, topic: str, records: Sequence[Output]) -> list[Awaitable[object]]:
        """Hand ``records`` to the producer, in order. Each awaitable completes when the broker
        has acknowledged its record, or raises when it will not."""
        ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    scores: str
    dead_letters: str
    alerts: str
    outcomes: str = "intent-outcomes"


@dataclass(frozen=True, slots=True)
class Batch:
    """Consumed messages and how to acknowledge them (to the consumer: done, commit them)."""

    messages: list[Message]
    ack: Callable[[], None]


Observe = Callable[[Sequence[Message], BatchResult, float], None]


def hard_exit(code: int) -> NoReturn:
    """Stop at once: no handler may acknowledge the batch on the way out."""
    logging.shutdown()
    os._exit(code)


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, IntentError) and exc.retriable


class BatchRunner:
    """Runs micro-batches through a pipeline and publishes their records.

    ``transactional`` (exactly-once): score records and dead letters go into the transaction
    of their source partition, which Faust commits with the offsets, so they are handed to the
    producer without waiting for the broker. Otherwise (at-least-once) every record is waited
    for, retried until the broker takes it, and only then is the batch acknowledged. Alerts are
    always waited for (their cooldowns are recorded after).

    ``observe(messages, result, seconds)`` is called after each batch (metrics; its errors are
    logged, never raised). ``on_retry(error)`` after each retriable failure of a batch,
    ``on_delivery_retry(error)`` after each failed attempt to deliver records to the broker.
    :meth:`in_flight_s` says how long the oldest batch taken has waited for its
    acknowledgement, so a batch stuck in the model or in delivery shows while it is stuck (the
    per-batch metrics move only once a batch is done). ``exit_process(code)`` ends the process;
    tests pass one that raises.
    """

    def __init__(self, pipeline: Pipeline, producer: Producer, topics: OutputTopics, *,
                 transactional: bool = False, observe: Observe | None = None,
                 on_retry: Callable[[BaseException], None] | None = None,
                 on_delivery_retry: Callable[[BaseException], None] | None = None,
                 exit_process: Callable[[int], NoReturn] = hard_exit,
                 first_pause_s: float = 0.1, retry_max_s: float = 2.0,
                 deliver_max_s: float = 10.0) -> None:
        self.pipeline = pipeline
        self._producer = producer
        self._topics = topics
        self._transactional = transactional
        self._observe = observe
        self._on_retry = on_retry
        self._on_delivery_retry = on_delivery_retry
        self._in_flight: dict[int, float] = {}  # id of a batch's message list -> taken at
        self._exit = exit_process
        self._first_pause_s = first_pause_s
        self._retry_max_s = retry_max_s
        self._deliver_max_s = deliver_max_s

    def in_flight_s(self) -> float:
        """Seconds (monotonic) since the oldest batch still in flight was taken: taken from the
        consumer and not yet acknowledged, or not yet through :meth:`process`; 0 when none."""
        if not self._in_flight:
            return 0.0
        return max(0.0, time.monotonic() - min(self._in_flight.values()))

    async def run(self, batches: AsyncIterable[Batch], *, want_batch: Callable[[], None],
                  overlap: bool = False) -> None:
        """Process ``batches`` one after another, acknowledging each once its records are
        delivered; ``want_batch()`` tells the consumer to cut the next one.

        With ``overlap``, two stages: while a second task runs the model on batch N, publishes
        and acknowledges it, this loop takes batch N+1 and prepares it (parse, Redis round trip,
        model inputs), so I/O and Python work overlap the forward pass. At most two batches are
        in flight; after a failed prepare the next batch waits until the failed one is through,
        because its fallback reads the windows again, which must not hold the next batch's
        events yet.
        """
        ready: asyncio.Queue = asyncio.Queue(maxsize=1)
        finisher = asyncio.ensure_future(self._finish_queued(ready)) if overlap else None
        want_batch()
        try:
            async for batch in batches:
                if not batch.messages:  # all of it taken away by a rebalance
                    want_batch()
                    continue
                started = time.monotonic()
                self._in_flight[id(batch.messages)] = started
                prepared = await self._prepare(batch.messages)
                if finisher is None:
                    await self._complete(batch, prepared, started)
                else:
                    done = asyncio.Event()
                    await ready.put((batch, prepared, started, done))
                    await ready.join()  # the finisher has it: two batches in flight at most
                    if prepared is None:
                        await done.wait()
                want_batch()
        finally:
            if finisher is not None:
                finisher.cancel()
            self._in_flight.clear()  # the stream ended: no batch of it is waited for any more

    async def process(self, messages: list[Message]) -> None:
        """One batch, start to end, acknowledged by the caller (Faust's stream, exactly-once).

        Faust acknowledges such a batch even when this raises, so nothing may escape before the
        records are handed over: a retriable failure is retried here and a broken worker stops
        the process instead.
        """
        started = time.monotonic()
        self._in_flight[id(messages)] = started
        try:
            try:
                result = await self.isolate(messages)
            except SystemicFailure as exc:
                self._stop(str(exc))
            await self.publish(result)
        finally:
            self._in_flight.pop(id(messages), None)
        self._record(messages, result, started)

    async def isolate(self, messages: Sequence[Message]) -> BatchResult:
        """The whole batch, retried while it fails for a retriable reason; if it fails for
        another, each message on its own, dead-lettering (``internal_error``) those that still
        fail, so one poisonous message never takes its batch's valid events with it.

        Raises :class:`SystemicFailure` when every message of a batch of several failed with
        the same error type: that is a broken worker (model, device), and dead-lettering the
        whole stream would lose it.
        """
        try:
            return await self._process(messages)
        except Exception as exc:  # noqa: BLE001 - isolated below, never lose the batch
            # the type only: an error's text may quote the event
            log.error("batch of %d failed (%s); processing its messages one by one",
                      len(messages), type(exc).__name__)
        combined = BatchResult()
        failures: list[type[BaseException]] = []
        for msg in messages:
            try:
                part = await self._process([msg])
            except Exception as exc:  # noqa: BLE001 - dead-lettered
                failures.append(type(exc))
                combined.dead_letters.append(self.pipeline.unprocessable(msg, exc))
                combined.dead_letter_reasons.append("internal_error")
                continue
            combined.merge(part)
        if len(messages) > 1 and len(failures) == len(messages) and len(set(failures)) == 1:
            raise SystemicFailure(f"every one of {len(messages)} messages failed with "
                                  f"{failures[0].__name__}")
        return combined

    async def publish(self, result: BatchResult) -> None:
        """Deliver a batch's score records and dead letters, then hand the records over to be
        kept for lookups (:meth:`Pipeline.keep_latest`), then deliver its alerts and record
        their cooldowns (:meth:`Pipeline.confirm`)."""
        topics = self._topics
        if self._transactional:
            await self._producer.send(topics.scores, result.scores)
            await self._producer.send(topics.dead_letters, result.dead_letters)
            await self._producer.send(topics.outcomes, result.outcomes)
        else:
            await self._deliver((topics.scores, result.scores),
                                (topics.dead_letters, result.dead_letters),
                                (topics.outcomes, result.outcomes))
        if result.resolutions:
            await self._until_done(lambda: self.pipeline.confirm_outcomes(result),
                                   "recording outcomes")
        try:  # in the background: nothing waits for it, and it must never fail the batch
            self.pipeline.keep_latest(result)
        except Exception:
            log.exception("handing %d score records over for lookups failed", len(result.scores))
        if result.dead_letters:
            log.info("dead-lettered %d messages (%s)", len(result.dead_letters),
                     ", ".join(sorted(set(result.dead_letter_reasons))))
        if result.alerts:
            await self._deliver((topics.alerts, result.alerts))
            await self.pipeline.confirm(result)
            log.info("published %d alerts (%s)", len(result.alerts),
                     ", ".join(sorted(set(result.alert_kinds))))

    async def _finish_queued(self, ready: asyncio.Queue) -> None:
        while True:
            batch, prepared, started, done = await ready.get()
            ready.task_done()
            await self._complete(batch, prepared, started)
            done.set()

    async def _prepare(self, messages: list[Message]) -> Prepared | None:
        """:meth:`Pipeline.prepare`; ``None`` if it failed (the batch is then processed again
        from the start by :meth:`isolate`)."""
        try:
            return await self.pipeline.prepare(messages)
        except Exception as exc:  # noqa: BLE001 - retried or isolated by _complete
            log.warning("preparing a batch of %d failed (%s)", len(messages), type(exc).__name__)
            return None

    async def _complete(self, batch: Batch, prepared: Prepared | None, started: float) -> None:
        """Finish a prepared batch (or process the whole batch again, isolating failures),
        publish its records and acknowledge it; stop the process if that cannot be done."""
        try:
            result = await self._finish(prepared) if prepared is not None else None
            if result is None:
                result = await self.isolate(batch.messages)
            await self.publish(result)
            batch.ack()
        except asyncio.CancelledError:
            raise
        except SystemicFailure as exc:
            self._stop(str(exc))
        except BaseException as exc:  # noqa: BLE001 - publishing failed for good: exit unacked
            self._stop(f"completing a batch failed ({type(exc).__name__})")
        finally:
            self._in_flight.pop(id(batch.messages), None)
        self._record(batch.messages, result, started)

    async def _finish(self, prepared: Prepared) -> BatchResult | None:
        """:meth:`Pipeline.finish`, retried while it fails for a retriable reason (Redis down:
        the alert cooldowns, the outcome state). It reads Redis and fills a fresh copy of the
        prepared result each time, so retrying is exact; preparing again instead
        would read windows that may already hold the next batch's events. ``None`` for any
        other failure: the caller isolates the batch."""
        try:
            return await self._until_done(lambda: self.pipeline.finish(prepared),
                                          "scoring a batch")
        except Exception as exc:  # noqa: BLE001 - isolated by the caller
            log.warning("scoring a batch failed (%s)", type(exc).__name__)
            return None

    async def _until_done(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``await call()``, called again with backoff while it raises a retriable
        :class:`IntentError`; any other error is raised. The batch is not acknowledged
        meanwhile, so no offset moves past events without outputs; the event loop stays free,
        so the consumer keeps heartbeating."""

        def retrying(exc: BaseException, pause_s: float) -> None:
            if self._on_retry is not None:
                self._on_retry(exc)
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, pause_s)

        return await retry(call, when=_retriable, first_s=self._first_pause_s,
                           max_s=self._retry_max_s, on_retry=retrying)

    async def _process(self, messages: Sequence[Message]) -> BatchResult:
        return await self._until_done(lambda: self.pipeline.process(messages),
                                      f"batch of {len(messages)}")

    async def _deliver(self, *parts: tuple[str, list[Output]]) -> None:
        """Send and wait for the broker's acknowledgement, retrying with backoff: an error must
        not leave the runner, or the batch would be acknowledged with records lost. A retry may
        send some records again, with the same ids (consumers dedupe on score_id and
        alert_id)."""

        async def send() -> None:
            acks = [ack for topic, records in parts
                    for ack in await self._producer.send(topic, records)]
            await asyncio.gather(*acks)

        def retrying(exc: BaseException, pause_s: float) -> None:
            if self._on_delivery_retry is not None:
                self._on_delivery_retry(exc)
            log.warning("delivering %d records to %s failed (%s); retrying in %.1fs",
                        sum(len(records) for _, records in parts),
                        ", ".join(topic for topic, _ in parts), type(exc).__name__, pause_s)

        await retry(send, when=lambda exc: True,
                    first_s=self._first_pause_s, max_s=self._deliver_max_s, on_retry=retrying)

    def _record(self, messages: Sequence[Message], result: BatchResult, started: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(messages, result, time.monotonic() - started)
        except Exception:  # a metric must never stop the stream
            log.exception("recording a batch's metrics failed")

    def _stop(self, reason: str) -> NoReturn:
        log.critical("%s: stopping the worker without acknowledging the batch", reason)
        self._exit(EXIT_BROKEN)
