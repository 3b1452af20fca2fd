"""``create_app(settings, ...)`` -> faust.App: wires topics and the scoring agent, nothing else."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faust
from faust.types import TP

from worker.errors import IntentError
from worker.kafka.batching import BatchingApp
from worker.kafka.security import faust_credentials
from worker.model.reload import ModelReloader
from worker.ops.metrics import CONTENT_TYPE_LATEST, Metrics
from worker.scoring.pipeline import (
    BatchResult,
    Message,
    Output,
    Pipeline,
    Prepared,
    SystemicFailure,
    process_isolating,
    retry_until_done,
)
from worker.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger(__name__)


def to_message(m: faust.types.Message) -> Message:
    return Message(
        key=m.key, value=m.value, topic=m.topic, partition=m.partition, offset=m.offset,
        timestamp_ms=int(m.timestamp * 1000) if m.timestamp else 0,
    )


def create_app(settings: Settings, *, pipeline: Pipeline, reloader: ModelReloader | None = None,
               metrics: Metrics | None = None, **faust_options: object) -> faust.App:
    """Build the Faust app around a ready :class:`Pipeline` (its store and scorer made by the caller).

    With a ``reloader``, the model directory is checked every ``INTENT_MODEL_POLL_S`` seconds
    and on SIGHUP; a new model is swapped in between batches.
    """
    app = BatchingApp(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="0.0.0.0",  # noqa: S104 - health/metrics endpoint, port is a setting
        stream_buffer_maxsize=max(4096, settings.batch_max * 4),
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_credentials=faust_credentials(settings),
        processing_guarantee=settings.processing_guarantee,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        **faust_options,
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    events = app.topic(settings.topic_events, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    scores = app.topic(settings.topic_scores, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    alerts = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    within = settings.batch_wait_ms / 1000.0
    metrics = metrics or Metrics()
    serving = [None]
    cache_seen = [0, 0]  # the scorer's cache counters at the last batch
    windows_seen = [0, 0]  # the window store's cache counters at the last batch

    # at-least-once: the consumer hands over whole micro-batches (worker.kafka.batching), the
    # agent acknowledges their messages once the broker took their outputs. exactly-once:
    # Faust's own per-message stream, whose events tie each send to the transaction of its
    # source partition.
    batched = settings.processing_guarantee == "at_least_once"
    if batched:
        app.topics.add(events)  # subscribed and acknowledged, though no stream reads it
        batches = app.channel(maxsize=1)
        app.batch_sink = lambda batch: batches.send(value=batch)
        app.batch_max, app.batch_wait_s = settings.batch_max, within
        overlap = settings.pipeline_overlap == "on" or (
            settings.pipeline_overlap == "auto"
            and str(getattr(pipeline.scorer, "device", "cpu")).startswith("cuda"))

        @app.agent(batches, concurrency=1, name="score-events")
        async def score_events(stream: faust.StreamT) -> None:
            # With overlap, two stages: while the finisher runs the model on batch N,
            # publishes and acknowledges it, this loop takes batch N+1 and prepares it (parse,
            # Redis round trip, model inputs), so I/O and Python work overlap the forward pass.
            ready: asyncio.Queue = asyncio.Queue(maxsize=1)
            finisher = asyncio.ensure_future(finish_batches(ready)) if overlap else None
            app.want_batch()
            try:
                async for handed in stream:
                    batch = app.consumer.take(handed)  # skips what a rebalance took away
                    if not batch:
                        app.want_batch()
                        continue
                    started = time.monotonic()
                    messages = [to_message(m) for m in batch]
                    try:
                        prepared = await pipeline.prepare(messages)
                    except Exception as exc:  # noqa: BLE001 - retried or isolated by complete
                        log.warning("preparing a batch of %d failed (%s)", len(messages),
                                    type(exc).__name__)
                        prepared = None
                    if finisher is None:
                        await complete(batch, messages, prepared, started)
                    else:
                        done = asyncio.Event()
                        await ready.put((batch, messages, prepared, started, done))
                        # at most two batches in flight: wait until the finisher has this one;
                        # after a failure until it is through (its fallback re-reads the
                        # windows, which must not hold the next batch's events yet)
                        await ready.join()
                        if prepared is None:
                            await done.wait()
                    app.want_batch()
            finally:
                if finisher is not None:
                    finisher.cancel()

        async def finish_batches(ready: asyncio.Queue) -> None:
            while True:
                batch, messages, prepared, started, done = await ready.get()
                ready.task_done()
                await complete(batch, messages, prepared, started)
                done.set()

        async def complete(batch: list, messages: list[Message], prepared: Prepared | None,
                           started: float) -> None:
            """Score a prepared batch (or the whole batch again, isolating failures), publish
            its records and acknowledge its messages."""
            try:
                result = await finish_until_done(prepared) if prepared is not None else None
                if result is None:
                    result = await isolate(messages)
                await publish(result)
                ack = app.consumer.ack
                for m in batch:
                    ack(m)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - publishing failed for good: exit unacked
                log.critical("completing a batch failed (%s): stopping the worker without "
                             "acknowledging it", type(exc).__name__)
                logging.shutdown()
                os._exit(70)
            try:
                observe(messages, result, time.monotonic() - started)
            except Exception:  # a metric must never stop the stream
                log.exception("recording a batch's metrics failed")

        async def finish_until_done(prepared: Prepared) -> BatchResult | None:
            """``pipeline.finish``, retried with backoff while it fails for a retriable reason
            (Redis down: the alert cooldowns). It only reads, so retrying is exact; re-preparing
            instead would re-read windows that may already hold the next batch's events.
            ``None`` for any other failure: the caller isolates the batch."""
            try:
                return await retry_until_done(lambda: pipeline.finish(prepared),
                                              what="scoring a batch",
                                              on_retry=lambda _: metrics.batch_retries.inc())
            except Exception as exc:  # noqa: BLE001 - isolated by the caller
                log.warning("scoring a batch failed (%s)", type(exc).__name__)
                return None

    else:
        @app.agent(events, concurrency=1, name="score-events")
        async def score_events(stream: faust.StreamT) -> None:
            async for batch in stream.take_events(settings.batch_max, within=within):
                started = time.monotonic()
                messages = [to_message(e.message) for e in batch]
                # Faust acks a take_events batch even when the body raises, so a retriable
                # failure is retried here, before the batch can be acknowledged.
                result = await isolate(messages)
                await publish(result)
                observe(messages, result, time.monotonic() - started)

    async def isolate(messages: list[Message]) -> BatchResult:
        """The whole batch again, retried until done or isolated message by message."""
        try:
            return await process_isolating(pipeline, messages,
                                           on_retry=lambda _: metrics.batch_retries.inc())
        except SystemicFailure as exc:
            # Raising here would let Faust acknowledge the batch; exit without it, so the
            # batch is consumed again after a restart (the supervisor's job).
            log.critical("%s: stopping the worker without acknowledging the batch", exc)
            logging.shutdown()
            os._exit(70)

    def observe(messages: list[Message], result: BatchResult, batch_s: float) -> None:
        metrics.observe_batch(
            messages=len(messages), events=result.events, scores=len(result.scores),
            latencies_s=[ms / 1000.0 for ms in result.latencies_ms],
            dead_letter_reasons=result.dead_letter_reasons, alert_kinds=result.alert_kinds,
            batch_s=batch_s, model_s=result.model_s, redis_s=result.store_s,
            detect_s=result.detect_s, sequences=result.sequences)
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic, m.partition)] = max(last.get((m.topic, m.partition), -1), m.offset)
        lags = {}
        for (topic, partition), offset in last.items():
            try:
                high = app.consumer.highwater(TP(topic, partition))
            except Exception:  # noqa: BLE001 - a metric must never fail a batch
                continue
            if high is not None:
                lags[(topic, partition)] = high - offset - 1
        metrics.set_lag(lags)
        scorer = pipeline.scorer
        if serving[0] != (scorer.name, scorer.version):
            serving[0] = (scorer.name, scorer.version)
            metrics.set_model(scorer.name, scorer.version)
            cache_seen[:] = [0, 0]
        count_cache(metrics.text_cache, cache_seen,
                    (getattr(scorer, "cache_hits", 0), getattr(scorer, "cache_misses", 0)))
        count_cache(metrics.window_cache, windows_seen, pipeline.window_cache_counts())

    def count_cache(counter: Counter, seen: list[int], now: tuple[int, int]) -> None:
        """Add what a cache's running (hits, misses) gained since ``seen`` to ``counter``."""
        for label, total, before in zip(("hit", "miss"), now, seen, strict=True):
            counter.labels(label).inc(max(0, total - before))
        seen[:] = now

    # at-least-once: records go straight to the producer (Faust's channel layer costs ~5 % of
    # a no-op worker's CPU); exactly-once: through the topics, which attach each send to the
    # transaction of its source partition.
    direct = batched

    async def send_all(topic: faust.TopicT, outputs: list[Output]) -> list:
        if direct:
            producer, name = app.producer, topic.get_topic_name()
            return [await producer.send(name, out.key, out.value, None, None, None) for out in outputs]
        return [await topic.send(key=out.key, value=out.value) for out in outputs]

    async def deliver(*parts: tuple[faust.TopicT, list[Output]]) -> None:
        """Send and wait for the broker's acknowledgement, retrying with backoff: an error
        must not leave the agent, or the batch would be acknowledged with records lost.
        A retry may send some again, with the same ids (consumers dedupe on score_id and
        alert_id)."""
        delay = 0.1
        while True:
            try:
                futures = [f for topic, outputs in parts for f in await send_all(topic, outputs)]
                await asyncio.gather(*futures)
                return
            except Exception as exc:  # noqa: BLE001 - retried until the broker takes them
                log.warning("delivering %d records to %s failed (%s); retrying in %.1fs",
                            sum(len(o) for _, o in parts),
                            ", ".join(t.get_topic_name() for t, _ in parts),
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(result: BatchResult) -> None:
        # at-least-once: the batch is acknowledged only after the broker took its records
        # (a send that fails is retried; a flush before a commit would not report it).
        # exactly-once: they go into the transaction of their source partition, which Faust
        # commits with the offsets.
        if batched:
            await deliver((scores, result.scores), (dlq, result.dead_letters))
        else:
            await send_all(scores, result.scores)
            await send_all(dlq, result.dead_letters)
        if result.dead_letters:
            log.info("dead-lettered %d messages (%s)", len(result.dead_letters),
                     ", ".join(sorted(set(result.dead_letter_reasons))))
        if result.alerts:
            # Alerts are rare and the fraud team must not get one twice: wait for the
            # broker to take them, then record them in the cooldown state, so a
            # redelivered batch finds them there and stays quiet.
            await deliver((alerts, result.alerts))
            await pipeline.confirm(result)
            log.info("published %d alerts (%s)", len(result.alerts),
                     ", ".join(sorted(set(result.alert_kinds))))

    @app.on_partitions_revoked.connect
    async def forget_lag(app: faust.App, revoked: set[TP], **_: object) -> None:
        """Revoked partitions are another worker's now: stop reporting their lag."""
        metrics.drop_lag((tp.topic, tp.partition) for tp in revoked)

    @app.page("/metrics")
    async def prometheus(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Prometheus text exposition of :class:`worker.ops.metrics.Metrics`."""
        # aiohttp refuses a charset inside content_type: send the header as it is
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Liveness: the process and its event loop answer."""
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Readiness: a model is loaded and Redis answers within a second."""
        scorer = pipeline.scorer
        body = {"model": {"name": scorer.name, "version": scorer.version}}
        try:
            await asyncio.wait_for(pipeline.ping_store(), timeout=1.0)
        except (IntentError, TimeoutError) as exc:
            return web.json({"status": "not ready", "redis": str(exc) or "timeout", **body}, status=503)
        return web.json({"status": "ready", **body})

    if reloader is not None:
        @app.task
        async def watch_model() -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reloader.check(force=True)))
            while settings.model_poll_s > 0:
                await asyncio.sleep(settings.model_poll_s)
                await reloader.check()

    return app


def topic_names(settings: Settings) -> Sequence[str]:
    return (settings.topic_events, settings.topic_scores, settings.topic_alerts, settings.topic_dlq)
