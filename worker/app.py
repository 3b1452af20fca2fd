"""``create_app(settings, ...)`` -> faust.App: wires topics and the scoring agent, nothing else.

What the agent does with a batch is :class:`worker.scoring.runner.BatchRunner`; this module
connects it to Faust: the consumer that hands over batches, the producer, the metrics, the
HTTP pages, the model reloader and the check of Redis' state marker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from functools import partial

import faust
from faust.types import TP

from worker.anomaly import KINDS
from worker.errors import IntentError
from worker.kafka.batching import BatchingApp
from worker.kafka.security import faust_credentials
from worker.model.reload import ModelReloader
from worker.ops.metrics import BatchObserver, Metrics
from worker.ops.pages import add_pages
from worker.ops.state_marker import StateMarker
from worker.scoring.pipeline import Message, Output, Pipeline
from worker.scoring.runner import Batch, BatchRunner, OutputTopics
from worker.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, pipeline: Pipeline, reloader: ModelReloader | None = None,
               metrics: Metrics | None = None, state_marker: StateMarker | None = None,
               **faust_options: object) -> faust.App:
    """The Faust app around a ready :class:`Pipeline` (its store and scorer made by the caller).

    at-least-once: the consumer hands over whole micro-batches (``worker.kafka.batching``) and
    the runner acknowledges them once the broker took their records. exactly-once: Faust's own
    per-message stream, whose events tie each send to the transaction of its source partition.
    With a ``reloader``, the model directory is checked every ``INTENT_MODEL_POLL_S`` seconds
    and on SIGHUP; a new model is swapped in between batches. With a ``state_marker`` (its
    first look already taken), Redis is checked every ``INTENT_REDIS_STATE_CHECK_S`` seconds
    for lost state, each loss counted in ``intent_redis_state_lost_total``.
    """
    batched = settings.processing_guarantee == "at_least_once"
    app = BatchingApp(
        settings.app_id,
        batch_max=settings.batch_max if batched else None,
        batch_wait_s=settings.batch_wait_ms / 1000.0,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
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
    events = app.topic(settings.topic_events, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    topics = OutputTopics(settings.topic_scores, settings.topic_dlq, settings.topic_alerts,
                          settings.topic_outcomes)
    metrics = metrics or Metrics(alert_kinds=KINDS)
    observer = BatchObserver(metrics, scorer=lambda: pipeline.scorer,
                             highwater=lambda t, p: app.consumer.highwater(TP(t, p)),
                             window_cache=pipeline.window_cache_counts,
                             latest=pipeline.latest_counts,
                             outcome_trouble=pipeline.outcome_trouble,
                             live=pipeline.live.figures if pipeline.live is not None else None)
    runner = BatchRunner(
        pipeline, DirectProducer(app) if batched else TopicProducer(app, topics),
        topics, transactional=not batched, observe=observer.observe,
        on_retry=lambda _: metrics.batch_retries.inc(),
        on_delivery_retry=lambda _: metrics.delivery_retries.inc())

    def before_scrape() -> None:
        metrics.batch_in_flight.set(runner.in_flight_s())
        observer.refresh_live()

    if batched:
        app.topics.add(events)  # subscribed and acknowledged, though no stream reads it
        overlap = settings.pipeline_overlap == "on" or (
            settings.pipeline_overlap == "auto"
            and str(getattr(pipeline.scorer, "device", "cpu")).startswith("cuda"))

        @app.agent(app.batches, concurrency=1, name="score-events")
        async def score_batches(stream: faust.StreamT) -> None:
            await runner.run(taken_batches(app, stream), want_batch=app.want_batch,
                             overlap=overlap)
    else:
        @app.agent(events, concurrency=1, name="score-events")
        async def score_events(stream: faust.StreamT) -> None:
            within = settings.batch_wait_ms / 1000.0
            async for batch in stream.take_events(settings.batch_max, within=within):
                await runner.process([to_message(e.message) for e in batch])

    @app.on_partitions_revoked.connect
    async def forget_lag(app: faust.App, revoked: set[TP], **_: object) -> None:
        observer.forget((tp.topic, tp.partition) for tp in revoked)
        if pipeline.outcomes is not None:  # its next owner keeps the watermark from there
            pipeline.outcomes.watermarks.forget((tp.topic, tp.partition) for tp in revoked)

    add_pages(app, metrics=metrics, serving=lambda: pipeline.scorer,
              ping_store=pipeline.ping_store, before_scrape=before_scrape)
    if reloader is not None:
        @app.task
        async def watch_model() -> None:
            await reloader.watch(settings.model_poll_s)
    if state_marker is not None:
        @app.timer(settings.redis_state_check_s)
        async def check_redis_state() -> None:
            try:
                lost = await state_marker.check()
            except IntentError as exc:  # Redis down: batches retry and /ready says so
                log.debug("Redis state marker not checked: %s", exc)
                return
            if lost:
                metrics.redis_state_lost.inc()

    return app


def topic_names(settings: Settings) -> Sequence[str]:
    return (settings.topic_events, settings.topic_scores, settings.topic_alerts, settings.topic_dlq,
            settings.topic_outcomes)


def to_message(m: faust.types.Message) -> Message:
    return Message(
        key=m.key, value=m.value, topic=m.topic, partition=m.partition, offset=m.offset,
        timestamp_ms=int(m.timestamp * 1000) if m.timestamp else 0,
    )


async def taken_batches(app: BatchingApp, stream: faust.StreamT) -> AsyncIterator[Batch]:
    """The batches the consumer handed over, less what a rebalance took away meanwhile."""
    async for handed in stream:
        taken = app.consumer.take(handed)
        yield Batch([to_message(m) for m in taken], partial(ack_all, app, taken))


def ack_all(app: faust.App, messages: list[faust.types.Message]) -> None:
    ack = app.consumer.ack
    for m in messages:
        ack(m)


class DirectProducer:
    """at-least-once: records go straight to the producer, past Faust's channel layer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send(self, topic: str, records: Sequence[Output]) -> list[Awaitable[object]]:
        producer = self._app.producer
        return [await producer.send(topic, r.key, r.value, None, None, None) for r in records]


class TopicProducer:
    """exactly-once: through Faust's topics, which attach each send to the transaction of its
    source partition."""

    def __init__(self, app: faust.App, topics: OutputTopics) -> None:
        self._topics = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
                        for name in (topics.scores, topics.dead_letters, topics.alerts,
                                     topics.outcomes)}

    async def send(self, topic: str, records: Sequence[Output]) -> list[Awaitable[object]]:
        faust_topic = self._topics[topic]
        return [await faust_topic.send(key=r.key, value=r.value) for r in records]
