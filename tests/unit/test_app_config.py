"""How settings reach the Faust app and the model runtime (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest

from worker.app import create_app
from worker.ops.metrics import Metrics
from worker.scoring.pipeline import Pipeline
from worker.scoring.scorer import NoopScorer
from worker.settings import load_settings
from worker.windows import MemoryWindowStore


def app_for(**overrides):
    settings = load_settings(**overrides)
    pipeline = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                        scorer=NoopScorer())
    return create_app(settings, pipeline=pipeline)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_processing_guarantee_reaches_faust(guarantee: str) -> None:
    assert app_for(processing_guarantee=guarantee).conf.processing_guarantee.value == guarantee


def test_security_and_session_settings_reach_faust() -> None:
    app = app_for(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                  kafka_sasl_password="p", kafka_session_timeout_s=12)
    assert app.conf.broker_credentials.username == "u"
    assert app.conf.broker_session_timeout == 12


def test_model_threads() -> None:
    assert load_settings(torch_threads=3).model_threads() == 3
    assert load_settings().model_threads() is None  # torch's default


def test_batching_settings_reach_the_consumer() -> None:
    from worker.kafka.batching import BatchingConsumer, BatchingConsumerThread

    app = app_for(batch_max=64, batch_wait_ms=20, kafka_fetch_max_wait_ms=250)
    assert (app.batch_max, app.batch_wait_s, app.fetch_max_wait_ms) == (64, 0.02, 250)
    assert app.batch_sink is not None  # at-least-once: whole batches
    assert isinstance(app.consumer, BatchingConsumer)
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, BatchingConsumerThread)

    async def wait_ms() -> int:  # aiokafka wants a running loop, nothing is started
        return thread._create_worker_consumer(app.transport)._fetch_max_wait_ms

    assert asyncio.run(wait_ms()) == 250


def test_exactly_once_keeps_fausts_per_message_stream() -> None:
    app = app_for(processing_guarantee="exactly_once")
    assert app.batch_sink is None


def test_take_skips_messages_of_an_older_generation_and_tracks_the_rest() -> None:
    from faust.types import TP
    from faust.types.tuples import ConsumerMessage

    app = app_for()
    consumer = app.consumer
    app.consumer_generation_id = 3

    def message(offset: int, generation: int) -> ConsumerMessage:
        return ConsumerMessage("clickstream", 0, offset, 0.0, 0, None, b"k", b"v", None, 1, 1,
                               TP("clickstream", 0), generation_id=generation)

    stale, fresh = message(1, 2), message(2, 3)
    app.flow_control.resume()
    assert consumer.take((1, [stale, fresh])) == [fresh] and app.batches_taken == 1
    assert fresh in consumer.unacked and stale not in consumer.unacked
    app.flow_control.suspend()  # a rebalance or stop in progress: nothing is taken
    assert consumer.take((2, [message(3, 3)])) == [] and app.batches_taken == 2


async def test_each_scrape_sets_the_age_of_the_batch_in_flight() -> None:
    """The /metrics page brings ``intent_batch_in_flight_seconds`` up to date before it renders
    (no batch in flight here: 0, whatever it said before)."""
    settings = load_settings()
    pipeline = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                        scorer=NoopScorer())
    metrics = Metrics()
    app = create_app(settings, pipeline=pipeline, metrics=metrics)
    metrics.batch_in_flight.set(99)
    response = await app.web.views["/metrics"].get(None)
    assert response.status == 200
    assert "\nintent_batch_in_flight_seconds 0.0\n" in response.body.decode()
