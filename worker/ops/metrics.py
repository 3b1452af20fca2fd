"""Prometheus metrics of the worker, served at ``GET /metrics`` on ``INTENT_WEB_PORT``.

One :class:`Metrics` per app, on its own registry (nothing registered at import time, so
tests and several apps in one process do not collide). :class:`BatchObserver` updates them
once per micro-batch from its result, never per event; the live quality and drift gauges at
most every few seconds from the figures it is given (:class:`LiveFigure`).

A live figure that is undefined (``nan``: one class only in the window, no reference, no
scores) is not exported: its label set is absent until the figure is defined again, so
neither a dashboard nor an alert ever reads a made-up number. The same holds for the serving
model's offline figures (:meth:`Metrics.set_offline`): a model directory without them exports
none.

Set from outside a batch: ``intent_ready`` by each readiness check (``worker.ops.pages``: every
``GET /ready`` and every scrape), ``intent_batch_in_flight_seconds`` at every scrape (a batch
stuck in the model or in delivery shows while the per-batch metrics stand still),
``intent_delivery_retries_total`` at each failed delivery attempt, the offline figures when a
model is loaded, and ``intent_redis_state_lost_total`` by the check of Redis' state marker
(``worker.ops.state_marker``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from worker.events.deadletter import REASONS

__all__ = ["CONTENT_TYPE_LATEST", "LIVE_EVERY_S", "BatchObserver", "LiveFigure", "Metrics"]

log = logging.getLogger(__name__)

# The live figures are recomputed over whole windows: every few seconds is enough for a
# dashboard scraped every 15 s, and keeps the work off most batches.
LIVE_EVERY_S = 5.0
_LIVE_LABELS = ["model", "version", "role"]
_OFFLINE_LABELS = ["model", "version"]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """The worker's metrics; names start with ``intent_``."""

    def __init__(self, *, alert_kinds: Iterable[str] = ()) -> None:
        """``alert_kinds``: the alert kinds to export at 0 from the start, as every dead-letter
        reason is: a labelled counter that appears only at its first increment hides that
        increment from ``rate()`` and ``increase()``."""
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.events_in = Counter("intent_events_in", "Messages consumed from the events topic",
                                 registry=r)
        self.events_scored = Counter("intent_events_scored",
                                     "Valid events covered by a score record", registry=r)
        self.scores = Counter("intent_scores", "Score records published", registry=r)
        self.dead_letters = Counter("intent_dead_letters", "Messages dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.alerts = Counter("intent_alerts", "Anomaly alerts published, by kind", ["kind"],
                              registry=r)
        for reason in sorted(REASONS):
            self.dead_letters.labels(reason)
        for kind in alert_kinds:
            self.alerts.labels(kind)
        self.batches = Counter("intent_batches", "Micro-batches processed", registry=r)
        self.batch_retries = Counter(
            "intent_batch_retries", "Micro-batch attempts that failed with a retriable error",
            registry=r)
        self.delivery_retries = Counter(
            "intent_delivery_retries", "Attempts to deliver a micro-batch's records that the "
            "broker refused or did not acknowledge (each retried)", registry=r)
        self.batch_in_flight = Gauge(
            "intent_batch_in_flight_seconds", "Age of the oldest micro-batch taken from the "
            "consumer and not yet acknowledged, 0 when none (set at each scrape)", registry=r)
        self.batch_size = Histogram("intent_batch_size_events", "Messages per micro-batch",
                                    buckets=_SIZES, registry=r)
        self.batch_seconds = Histogram("intent_batch_seconds",
                                       "Wall time of a micro-batch, end to end",
                                       buckets=_SECONDS, registry=r)
        self.model_seconds = Histogram("intent_model_seconds", "Model time of a micro-batch",
                                       buckets=_SECONDS, registry=r)
        self.model_sequences = Histogram("intent_model_sequences", "Model inputs per micro-batch",
                                         buckets=_SIZES, registry=r)
        self.redis_seconds = Histogram("intent_redis_seconds",
                                       "Window store round trip of a micro-batch", buckets=_SECONDS,
                                       registry=r)
        self.detect_seconds = Histogram("intent_detect_seconds",
                                        "Anomaly detector time of a micro-batch",
                                        buckets=_SECONDS, registry=r)
        self.latency = Histogram("intent_event_to_score_seconds",
                                 "Kafka timestamp of the newest covered event to score publication",
                                 buckets=_LATENCY, registry=r)
        self.lag = Gauge("intent_consumer_lag", "Messages behind the partition's high watermark",
                         ["topic", "partition"], registry=r)
        self.text_cache = Counter("intent_text_cache", "Model inputs whose text vector came from "
                                  "the cache (result=hit) or the encoder (result=miss)",
                                  ["result"], registry=r)
        self.event_vectors = Counter(
            "intent_event_vectors", "Distinct event phrases of a batch whose vector came from "
            "this process (source=process), the shared Redis store (source=redis) or the "
            "encoder (source=encoder); pooled models only", ["source"], registry=r)
        self.window_cache = Counter("intent_window_cache", "Windows Redis answered with event "
                                    "ids only, this worker holding the rest (result=hit), or "
                                    "whole (result=miss)", ["result"], registry=r)
        self.latest_scores = Counter(
            "intent_latest_scores", "Score records kept for lookups in the background: "
            "written, kept (a later record of the user was stored) or failed (the write "
            "failed; the user's next score writes again)", ["result"], registry=r)
        self.model_info = Gauge("intent_model_info", "The model serving now (value 1)",
                                ["name", "version"], registry=r)
        # offline figure (as in worker.model.offline) -> its gauge
        self.offline = {
            "pr_auc": Gauge("intent_model_offline_pr_auc", "PR-AUC of the serving model on its "
                            "validation users at training time (metrics.json of its model "
                            "directory)", _OFFLINE_LABELS, registry=r),
            "roc_auc": Gauge("intent_model_offline_roc_auc", "ROC-AUC of the serving model on "
                             "its validation users at training time (metrics.json of its model "
                             "directory)", _OFFLINE_LABELS, registry=r),
        }
        self.ready = Gauge("intent_ready", "1 when a model is loaded and Redis answered the "
                           "readiness ping in time, else 0 (each GET /ready and scrape)",
                           registry=r)
        self.redis_state_lost = Counter(
            "intent_redis_state_lost", "Times this worker found Redis restarted without its "
            "state (windows, cooldowns, outcome state gone)", registry=r)
        self.outcomes = Counter("intent_outcomes", "Outcomes of score records resolved, by "
                                "label (1: purchased within the horizon)", ["label"], registry=r)
        for label in ("0", "1"):
            self.outcomes.labels(label)  # both exported from the start, so rate() sees them
        self.outcome_seconds = Histogram("intent_outcome_seconds",
                                         "Outcome tracking time of a micro-batch",
                                         buckets=_SECONDS, registry=r)
        self.outcome_trouble = Counter(
            "intent_outcome_trouble", "Outcome tracking's losses: waiting scores dropped over "
            "INTENT_OUTCOME_MAX_PENDING (reason=dropped), batches whose shadow scores were "
            "left out because the shadow failed (reason=shadow_failed)", ["reason"], registry=r)
        for reason in ("dropped", "shadow_failed"):
            self.outcome_trouble.labels(reason)
        self.shadow_seconds = Histogram("intent_shadow_seconds",
                                        "Shadow model time of a micro-batch (with a shadow)",
                                        buckets=_SECONDS, registry=r)
        # LiveFigure attribute -> its gauge
        self.live = {
            "pr_auc": Gauge("intent_live_pr_auc", "PR-AUC (average precision) over the live "
                            "window of outcomes", _LIVE_LABELS, registry=r),
            "roc_auc": Gauge("intent_live_roc_auc", "ROC-AUC over the live window of outcomes",
                             _LIVE_LABELS, registry=r),
            "brier": Gauge("intent_live_brier", "Brier score over the live window of outcomes",
                           _LIVE_LABELS, registry=r),
            "ece": Gauge("intent_live_ece", "Expected calibration error (10 equal-width bins) "
                         "over the live window of outcomes", _LIVE_LABELS, registry=r),
            "outcomes": Gauge("intent_live_outcomes", "Outcomes in the live window",
                              _LIVE_LABELS, registry=r),
            "positives": Gauge("intent_live_positives", "Positive outcomes in the live window",
                               _LIVE_LABELS, registry=r),
            "psi": Gauge("intent_score_psi", "Population stability index of recent scores "
                         "against the model's training-time scores", _LIVE_LABELS, registry=r),
        }
        self._live_shown: dict[str, set[tuple[str, str, str]]] = {k: set() for k in self.live}

    def observe_batch(self, *, messages: int, events: int, scores: int,
                      latencies_s: Iterable[float], dead_letter_reasons: Iterable[str],
                      alert_kinds: Iterable[str], batch_s: float, model_s: float,
                      redis_s: float, detect_s: float, sequences: int) -> None:
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

    def observe_outcomes(self, labels: Iterable[int], seconds: float) -> None:
        """One batch's resolved outcomes (labels 0/1) and the time tracking them took."""
        ones = zeros = 0
        for label in labels:
            if label:
                ones += 1
            else:
                zeros += 1
        if zeros:
            self.outcomes.labels("0").inc(zeros)
        if ones:
            self.outcomes.labels("1").inc(ones)
        self.outcome_seconds.observe(seconds)

    def set_live(self, figures: Iterable[LiveFigure]) -> None:
        """Set the live gauges to ``figures``; label sets not among them, or whose figure is
        ``nan`` now, are removed."""
        shown: dict[str, set[tuple[str, str, str]]] = {k: set() for k in self.live}
        for f in figures:
            labels = (f.model, f.version, f.role)
            for attr, gauge in self.live.items():
                value = float(getattr(f, attr))
                if math.isnan(value):
                    continue
                gauge.labels(*labels).set(value)
                shown[attr].add(labels)
        for attr, gauge in self.live.items():
            for labels in self._live_shown[attr] - shown[attr]:
                gauge.remove(*labels)
        self._live_shown = shown

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(max(0, lag))

    def drop_lag(self, partitions: Iterable[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):  # never reported
                self.lag.remove(topic, str(partition))

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def set_offline(self, name: str, version: str, figures: Mapping[str, float]) -> None:
        """Show ``figures`` (``pr_auc``, ``roc_auc``: the model's validation figures) as the
        serving model's, replacing any earlier model's; a figure missing from ``figures`` or
        not finite is not exported."""
        for key, gauge in self.offline.items():
            gauge.clear()
            value = figures.get(key)
            if value is not None and math.isfinite(value):
                gauge.labels(name, version).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Consumed(Protocol):
    """Where a consumed message came from."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Outcome(Protocol):
    """What a micro-batch produced (``worker.scoring.pipeline.BatchResult``)."""

    scores: Sized
    latencies_ms: Sequence[int]
    dead_letter_reasons: Sequence[str]
    alert_kinds: Sequence[str]
    events: int
    sequences: int
    store_s: float
    model_s: float
    detect_s: float
    outcome_labels: Sequence[int]  # the labels of the outcomes the batch resolved
    outcome_s: float  # time the outcome tracking took
    shadow_s: float  # time the shadow model took (0 without one)


class LiveFigure(Protocol):
    """One model's live quality and drift (``worker.outcomes.live.LiveFigures``); ``nan`` where
    undefined. ``role`` is ``champion`` (the model serving) or ``shadow``."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def outcomes(self) -> int: ...
    @property
    def positives(self) -> int: ...
    @property
    def pr_auc(self) -> float: ...
    @property
    def roc_auc(self) -> float: ...
    @property
    def brier(self) -> float: ...
    @property
    def ece(self) -> float: ...
    @property
    def psi(self) -> float: ...


class Serving(Protocol):
    """The scorer serving now; ``cache_hits`` and ``cache_misses`` too, if it has a text cache,
    and ``vectors`` (:class:`~worker.model.vectors.EventVectors`) if it reads event vectors."""

    name: str
    version: str


class BatchObserver:
    """Records each finished micro-batch in :class:`Metrics`.

    Besides the batch's own counts: the consumer lag of the partitions it came from
    (``highwater(topic, partition)``: the partition's high watermark, ``None`` if unknown), the
    model serving (``scorer()``), and what the model's text cache or event vectors and the
    window store's cache (``window_cache()``: running hits and misses) and the latest scores
    kept for lookups (``latest()``: running written, kept, failed) gained since the last
    batch. A new model starts its caches' counts from zero.

    ``live()``, when given, returns the live quality and drift figures; they are computed over
    whole windows, so the gauges are refreshed from it at most every ``live_every_s`` seconds
    (``clock``: monotonic), on the first batch after that time. A failure there is logged and
    never fails the batch.
    """

    def __init__(self, metrics: Metrics, *, highwater: Callable[[str, int], int | None],
                 scorer: Callable[[], Serving],
                 window_cache: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 latest: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
                 outcome_trouble: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 live: Callable[[], Sequence[LiveFigure]] | None = None,
                 live_every_s: float = LIVE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self._live = live
        self._live_every_s = live_every_s
        self._clock = clock
        self._live_at: float | None = None
        self._highwater = highwater
        self._scorer = scorer
        self._window_cache = window_cache
        self._latest = latest
        self._outcome_trouble = outcome_trouble
        self._trouble_seen = (0, 0)
        self._serving: tuple[str, str] | None = None
        self._text_seen = (0, 0)
        self._vectors_seen = (0, 0, 0)
        self._windows_seen = (0, 0)
        self._latest_seen = (0, 0, 0)

    def observe(self, messages: Sequence[Consumed], result: Outcome, batch_s: float) -> None:
        metrics = self.metrics
        metrics.observe_batch(
            messages=len(messages), events=result.events, scores=len(result.scores),
            latencies_s=[ms / 1000.0 for ms in result.latencies_ms],
            dead_letter_reasons=result.dead_letter_reasons, alert_kinds=result.alert_kinds,
            batch_s=batch_s, model_s=result.model_s, redis_s=result.store_s,
            detect_s=result.detect_s, sequences=result.sequences)
        metrics.set_lag(self.lags(messages))
        scorer = self._scorer()
        if self._serving != (scorer.name, scorer.version):
            self._serving = (scorer.name, scorer.version)
            metrics.set_model(scorer.name, scorer.version)
            self._text_seen, self._vectors_seen = (0, 0), (0, 0, 0)
        text_cache = (getattr(scorer, "cache_hits", 0), getattr(scorer, "cache_misses", 0))
        self._text_seen = _count(metrics.text_cache, self._text_seen, text_cache)
        vectors = getattr(scorer, "vectors", None)
        if vectors is not None:
            now = (vectors.process_hits, vectors.store_hits, vectors.encoded)
            self._vectors_seen = _count(metrics.event_vectors, self._vectors_seen, now,
                                        ("process", "redis", "encoder"))
        self._windows_seen = _count(metrics.window_cache, self._windows_seen, self._window_cache())
        self._latest_seen = _count(metrics.latest_scores, self._latest_seen, self._latest(),
                                   ("written", "kept", "failed"))
        self._trouble_seen = _count(metrics.outcome_trouble, self._trouble_seen,
                                    self._outcome_trouble(), ("dropped", "shadow_failed"))
        if result.shadow_s:
            metrics.shadow_seconds.observe(result.shadow_s)
        self.refresh_live()
        if result.outcome_labels or result.outcome_s:  # outcome tracking on
            metrics.observe_outcomes(result.outcome_labels, result.outcome_s)

    def refresh_live(self, *, force: bool = False) -> None:
        """Set the live gauges from ``live()`` if ``live_every_s`` passed since the last time
        (or ``force``)."""
        if self._live is None:
            return
        now = self._clock()
        if not force and self._live_at is not None and now - self._live_at < self._live_every_s:
            return
        self._live_at = now
        try:
            self.metrics.set_live(self._live())
        except Exception:  # noqa: BLE001 - a metric must never fail a batch
            log.warning("live quality figures not updated", exc_info=True)

    def lags(self, messages: Sequence[Consumed]) -> dict[tuple[str, int], int]:
        """Messages behind the high watermark, per partition, after the last of ``messages``;
        partitions whose watermark is unknown are left out."""
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            last[tp] = max(last.get(tp, -1), m.offset)
        lags = {}
        for (topic, partition), offset in last.items():
            try:
                high = self._highwater(topic, partition)
            except Exception:  # noqa: BLE001, S112 - a metric must never fail a batch
                continue
            if high is not None:
                lags[(topic, partition)] = high - offset - 1
        return lags

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Stop reporting the lag of ``partitions`` (revoked: another worker's now)."""
        self.metrics.drop_lag(partitions)


def _count(counter: Counter, seen: tuple[int, ...], now: tuple[int, ...],
           labels: tuple[str, ...] = ("hit", "miss")) -> tuple[int, ...]:
    """Add what running counts (by default a cache's hits and misses) gained since ``seen`` to
    ``counter``, one label each."""
    for label, total, before in zip(labels, now, seen, strict=True):
        counter.labels(label).inc(max(0, total - before))
    return now
