"""Prometheus metrics of the worker, served at ``GET /metrics`` on ``INTENT_WEB_PORT``.

One :class:`Metrics` per app, on its own registry (nothing registered at import time, so
tests and several apps in one process do not collide). Updated once per micro-batch from
the :class:`~worker.scoring.pipeline.BatchResult`, never per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """The worker's metrics; names start with ``intent_``."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.events_in = Counter("intent_events_in", "Messages consumed from the events topic", registry=r)
        self.events_scored = Counter("intent_events_scored", "Valid events covered by a score record",
                                     registry=r)
        self.scores = Counter("intent_scores", "Score records published", registry=r)
        self.dead_letters = Counter("intent_dead_letters", "Messages dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.alerts = Counter("intent_alerts", "Anomaly alerts published, by kind", ["kind"], registry=r)
        self.batches = Counter("intent_batches", "Micro-batches processed", registry=r)
        self.batch_retries = Counter("intent_batch_retries",
                                     "Micro-batch attempts that failed with a retriable error", registry=r)
        self.batch_size = Histogram("intent_batch_size_events", "Messages per micro-batch",
                                    buckets=_SIZES, registry=r)
        self.batch_seconds = Histogram("intent_batch_seconds", "Wall time of a micro-batch, end to end",
                                       buckets=_SECONDS, registry=r)
        self.model_seconds = Histogram("intent_model_seconds", "Model time of a micro-batch",
                                       buckets=_SECONDS, registry=r)
        self.model_sequences = Histogram("intent_model_sequences", "Model inputs per micro-batch",
                                         buckets=_SIZES, registry=r)
        self.redis_seconds = Histogram("intent_redis_seconds",
                                       "Window store round trip of a micro-batch", buckets=_SECONDS,
                                       registry=r)
        self.detect_seconds = Histogram("intent_detect_seconds", "Anomaly detector time of a micro-batch",
                                        buckets=_SECONDS, registry=r)
        self.latency = Histogram("intent_event_to_score_seconds",
                                 "Kafka timestamp of the newest covered event to score publication",
                                 buckets=_LATENCY, registry=r)
        self.lag = Gauge("intent_consumer_lag", "Messages behind the partition's high watermark",
                         ["topic", "partition"], registry=r)
        self.text_cache = Counter("intent_text_cache", "Model inputs whose text vector came from the "
                                  "cache (result=hit) or the encoder (result=miss)", ["result"],
                                  registry=r)
        self.window_cache = Counter("intent_window_cache", "Windows Redis answered with event "
                                    "ids only, this worker holding the rest (result=hit), or "
                                    "whole (result=miss)", ["result"], registry=r)
        self.model_info = Gauge("intent_model_info", "The model serving now (value 1)",
                                ["name", "version"], registry=r)

    def observe_batch(self, *, messages: int, events: int, scores: int, latencies_s: Iterable[float],
                      dead_letter_reasons: Iterable[str], alert_kinds: Iterable[str],
                      batch_s: float, model_s: float, redis_s: float, detect_s: float,
                      sequences: int) -> None:
        self.events_in.inc(messages)
        self.events_scored.inc(events)
        self.scores.inc(scores)
        self.batches.inc()
        self.batch_size.observe(messages)
        self.batch_seconds.observe(batch_s)
        if sequences:
            self.model_seconds.observe(model_s)
            self.model_sequences.observe(sequences)
        self.redis_seconds.observe(redis_s)
        self.detect_seconds.observe(detect_s)
        for s in latencies_s:
            self.latency.observe(s)
        for reason in dead_letter_reasons:
            self.dead_letters.labels(reason).inc()
        for kind in alert_kinds:
            self.alerts.labels(kind).inc()

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(max(0, lag))

    def drop_lag(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            try:
                self.lag.remove(topic, str(partition))
            except KeyError:
                pass  # never reported

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
