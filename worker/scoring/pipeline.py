"""One micro-batch: validate -> window -> features -> model -> records -> alerts.

Framework-free: the batch runner (:mod:`worker.scoring.runner`) hands in the messages of a
batch and publishes what comes out, so this runs the same in the worker, in replays and in
unit tests with a memory store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from worker.anomaly.alerts import ModelRef, alert_record
from worker.anomaly.batch import BatchDetector
from worker.anomaly.state import CooldownState, DetectorState, Exchanged, state_for
from worker.errors import BadEvent, IntentError
from worker.events import dead_letter, parse_event
from worker.features import EventCache, ModelInput, build_input
from worker.features.window import event_time_key
from worker.latest import LatestScore, RedisLatestScores, WriteBehind, stored_record
from worker.scoring.records import explanation_record, score_record
from worker.scoring.scorer import AsyncScorer, ExplainingScorer, Scorer
from worker.settings import Settings
from worker.windows import RedisWindowStore, WindowStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed Kafka message, as the pipeline needs it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Output:
    """A record to publish: key and serialised value."""

    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchResult:
    scores: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    dead_letter_reasons: list[str] = field(default_factory=list)
    alerts: list[Output] = field(default_factory=list)
    alert_kinds: list[str] = field(default_factory=list)
    # cooldown state to write once the alerts are delivered (Pipeline.confirm)
    cooldown_updates: dict[str, CooldownState] = field(default_factory=dict)
    # the score records to keep for lookups once delivered (Pipeline.keep_latest)
    latest: list[LatestScore] = field(default_factory=list)
    events: int = 0
    users: int = 0
    sequences: int = 0  # model inputs: one per user, plus out-of-character prior windows
    latencies_ms: list[int] = field(default_factory=list)  # per score record, as in the record
    store_s: float = 0.0
    model_s: float = 0.0
    detect_s: float = 0.0

    def merge(self, other: BatchResult) -> None:
        """Add ``other`` (a later part of the same batch) to this result."""
        for name in ("scores", "dead_letters", "dead_letter_reasons", "alerts", "alert_kinds",
                     "latencies_ms", "latest"):
            getattr(self, name).extend(getattr(other, name))
        for user, state in other.cooldown_updates.items():
            self.cooldown_updates.setdefault(user, {}).update(state)
        for name in ("events", "users", "sequences", "store_s", "model_s", "detect_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class _UserBatch:
    events: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    appended_at_ms: int = 0


@dataclass(slots=True)
class Prepared:
    """A batch after :meth:`Pipeline.prepare`: windows read, model inputs built."""

    result: BatchResult
    scorer: Scorer
    users: dict[str, _UserBatch]
    new: dict[str, list[dict]] = field(default_factory=dict)
    exchanged: Exchanged = field(default_factory=lambda: Exchanged({}))
    priors: list = field(default_factory=list)
    inputs: list[ModelInput] = field(default_factory=list)


class Pipeline:
    """Scores micro-batches of raw messages.

    ``scorer`` is read once per batch, so assigning a new one swaps the model
    between batches without a restart. ``event_cache`` keeps each window event's share of the
    model inputs for the next batches (default: ``INTENT_WINDOW_CACHE_EVENTS`` events, as the
    Redis store's decoded events, whose dicts come back batch after batch). ``latest`` keeps
    each user's newest published record for lookups (:meth:`keep_latest`).
    """

    def __init__(self, settings: Settings, *, store: WindowStore, scorer: Scorer,
                 executor: Executor | None = None, detector: BatchDetector | None = None,
                 event_cache: EventCache | None = None,
                 latest: WriteBehind | None = None) -> None:
        self._settings = settings
        self._store = store
        self.scorer = scorer
        self._executor = executor
        self._detector = detector
        self.latest = latest
        self._event_cache = (event_cache if event_cache is not None
                             else EventCache(settings.window_cache_events))

    @classmethod
    def from_settings(cls, settings: Settings, *, store: WindowStore, scorer: Scorer,
                      executor: Executor | None = None,
                      detector_state: DetectorState | None = None) -> Pipeline:
        """With the anomaly detectors of ``settings`` (unless ``INTENT_ANOMALY_ENABLED`` is off),
        their state kept beside ``store`` (default: :func:`~worker.anomaly.state.state_for`),
        and, on a Redis store, each user's latest score kept beside the window."""
        detector = None
        if settings.anomaly_enabled:
            state = detector_state if detector_state is not None else state_for(store)
            detector = BatchDetector.from_settings(settings, state)
        latest = (WriteBehind(RedisLatestScores.beside(store))
                  if isinstance(store, RedisWindowStore) else None)
        return cls(settings, store=store, scorer=scorer, executor=executor, detector=detector,
                   latest=latest)

    async def process(self, messages: Sequence[Message]) -> BatchResult:
        """One micro-batch, start to end: :meth:`prepare`, then :meth:`finish`."""
        return await self.finish(await self.prepare(messages))

    async def prepare(self, messages: Sequence[Message]) -> Prepared:
        """The batch up to the model: parse, dead-letter, append to the windows and read them
        (one Redis round trip), build the model inputs. The worker prepares the next batch
        while the model runs on this one (:meth:`finish`), so Redis and Kafka I/O and this
        Python work overlap the forward pass."""
        result = BatchResult()
        received_at = datetime.now(UTC)
        users: dict[str, _UserBatch] = {}
        for msg in messages:
            try:
                event = parse_event(msg.value, max_bytes=self._settings.max_event_bytes)
            except BadEvent as exc:
                result.dead_letters.append(self._dead_letter(msg, exc, received_at))
                result.dead_letter_reasons.append(exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the stream or lose the batch
                result.dead_letters.append(self.unprocessable(msg, exc, received_at))
                result.dead_letter_reasons.append("internal_error")
                continue
            batch = users.get(event["user_id"])
            if batch is None:
                batch = users[event["user_id"]] = _UserBatch()
            if event["event_id"] not in batch.ids:  # a duplicate inside one batch counts once
                batch.ids.add(event["event_id"])
                batch.events.append(event)
            batch.appended_at_ms = max(batch.appended_at_ms, msg.timestamp_ms)
        result.events = sum(len(b.events) for b in users.values())
        result.users = len(users)
        scorer = self.scorer  # read once: a swap takes effect at the next batch
        if not users:
            return Prepared(result, scorer, users)

        new = {u: b.events for u, b in users.items()}
        detector = self._detector
        t0 = time.perf_counter()
        if detector is not None:
            got = await detector.exchange(new)  # windows and price samples: one round trip
        else:
            got = Exchanged(await self._store.append(new))
        windows = got.windows
        result.store_s = time.perf_counter() - t0

        cache = self._event_cache
        max_chars, price = scorer.max_chars, getattr(scorer, "phrase_price", None)
        inputs: list[ModelInput] = [build_input(windows[u], max_chars=max_chars,
                                                phrase_price=price, cache=cache)
                                    for u in users]
        # out-of-character candidates need the score of the window before the purchase:
        # scored in the same model call (usually none; purchases of unseen products only)
        t_detect = time.perf_counter()
        priors = detector.prior_windows(windows, new) if detector is not None else []
        result.detect_s = time.perf_counter() - t_detect
        inputs.extend(build_input(list(p.window), max_chars=max_chars, phrase_price=price,
                                  cache=cache) for p in priors)
        result.sequences = len(inputs)
        return Prepared(result, scorer, users, new, got, priors, inputs)

    async def finish(self, prepared: Prepared) -> BatchResult:
        """The rest of a prepared batch: the model, score records, anomaly alerts."""
        result, scorer, users = prepared.result, prepared.scorer, prepared.users
        if not users:
            return result
        inputs, priors, windows = prepared.inputs, prepared.priors, prepared.exchanged.windows
        t1 = time.perf_counter()
        explanations: list | None = None
        if self._settings.explain and isinstance(scorer, ExplainingScorer):
            # same vectors, same call: the explanation costs dot products, no encoder work
            all_scores, explanations = await scorer.explain_async(
                inputs, top=self._settings.explain_top)
        else:
            all_scores = await self._run_model(scorer, inputs)
        t2 = time.perf_counter()
        result.model_s = t2 - t1
        if len(all_scores) != len(inputs):
            raise RuntimeError(f"scorer returned {len(all_scores)} scores for {len(inputs)} inputs")
        scores = all_scores[:len(users)]

        scored_at_ms = time.time_ns() // 1_000_000
        keep = self.latest is not None
        for i, ((user_id, batch), score) in enumerate(zip(users.items(), scores, strict=True)):
            window = windows[user_id]
            record = score_record(
                user_id=user_id, covered=batch.events, window=window, score=score,
                model_name=scorer.name, model_version=scorer.version,
                scored_at_ms=scored_at_ms, appended_at_ms=batch.appended_at_ms,
                explanation=(explanation_record(explanations[i], window)
                             if explanations is not None else None),
            )
            value = orjson.dumps(record)
            result.scores.append(Output(user_id.encode(), value))
            result.latencies_ms.append(record["latency_ms"])
            if keep:
                newest = max(batch.events, key=event_time_key)
                result.latest.append(LatestScore(user_id, newest["ts"], newest["event_id"],
                                                 stored_record(record)))
        detector = self._detector
        if detector is not None:
            prior_scores = {p.purchase_id: s for p, s in zip(priors, all_scores[len(users):],
                                                             strict=True)}
            await self._detect(detector, result, prepared.new, prepared.exchanged, prior_scores,
                               scorer)
            result.detect_s += time.perf_counter() - t2
        return result

    async def _detect(self, detector: BatchDetector, result: BatchResult,
                      new: dict[str, list[dict]], got: Exchanged, prior_scores: dict[str, float],
                      scorer: Scorer) -> None:
        detected = await detector.alerts(got, new, prior_scores=prior_scores,
                                         model=ModelRef(scorer.name, scorer.version))
        result.cooldown_updates = detected.cooldown_updates
        detected_at_ms = time.time_ns() // 1_000_000
        for alert in detected.emitted:
            record = alert_record(alert, detected_at_ms=detected_at_ms)
            result.alerts.append(Output(alert.user_id.encode(), orjson.dumps(record)))
            result.alert_kinds.append(alert.kind)

    async def confirm(self, result: BatchResult) -> None:
        """Call once the batch's alerts were delivered: records them in the cooldown state,
        so a redelivery of the batch does not send them again. Best effort: if this fails,
        a redelivery sends the same alert ids again (consumers dedupe on ``alert_id``)."""
        if not result.cooldown_updates or self._detector is None:
            return
        try:
            await self._detector.confirm(result.cooldown_updates)
        except IntentError as exc:
            log.warning("alert cooldown state not saved (%s); a redelivery may repeat %d alerts",
                        exc, len(result.alerts))

    def keep_latest(self, result: BatchResult) -> None:
        """Call once the batch's score records were delivered: keeps each user's newest one for
        lookups, in the background (:class:`~worker.latest.WriteBehind`; never waits, never
        raises)."""
        if self.latest is not None and result.latest:
            self.latest.submit(result.latest)

    def latest_counts(self) -> tuple[int, int, int]:
        """Latest scores written, kept (a later one was stored) and failed, so far."""
        return self.latest.counts if self.latest is not None else (0, 0, 0)

    def window_cache_counts(self) -> tuple[int, int]:
        """Windows the store answered from its cache and whole, so far (0, 0 without one)."""
        cache = getattr(self._store, "windows", None)
        return (cache.hits, cache.misses) if cache is not None else (0, 0)

    async def ping_store(self) -> None:
        """Raises when the window store does not answer (readiness checks)."""
        await self._store.ping()

    async def _run_model(self, scorer: Scorer, inputs: list[ModelInput]) -> list[float]:
        if isinstance(scorer, AsyncScorer):  # event vectors: store I/O, encodes in its executor
            return await scorer.score_async(inputs)
        # Off the event loop: the consumer keeps heartbeating during a long forward pass.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, scorer.score, inputs)

    def unprocessable(self, msg: Message, exc: BaseException,
                      received_at: datetime | None = None) -> Output:
        """Dead letter for a message the worker failed on for an unexpected reason (a bug, not
        bad input): reason ``internal_error``, the error's type and message as detail. Logged
        without the payload."""
        log.error("message %s[%d]@%d failed unexpectedly (%s); dead-lettered as internal_error",
                  msg.topic, msg.partition, msg.offset, type(exc).__name__)
        return self._dead_letter(msg, BadEvent("internal_error", f"{type(exc).__name__}: {exc}"),
                                 received_at or datetime.now(UTC))

    def _dead_letter(self, msg: Message, exc: BadEvent, received_at: datetime) -> Output:
        record = dead_letter(
            raw=msg.value, key=msg.key, reason=exc.reason, detail=exc.detail, topic=msg.topic,
            partition=msg.partition, offset=msg.offset, received_at=received_at,
            payload_max=self._settings.dlq_payload_bytes,
        )
        return Output(msg.key, orjson.dumps(record))

