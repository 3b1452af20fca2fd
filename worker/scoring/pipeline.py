"""One micro-batch: validate -> window -> features -> model -> records -> alerts.

Framework-free: the batch runner (:mod:`worker.scoring.runner`) hands in the messages of a
batch and publishes what comes out, so this runs the same in the worker, in replays and in
unit tests with a memory store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import orjson

from worker.anomaly.alerts import ModelRef, alert_record
from worker.anomaly.batch import BatchDetector
from worker.anomaly.state import CooldownState, DetectorState, Exchanged, state_for
from worker.dataset.examples import DEFAULT_HORIZON_S, is_example
from worker.errors import BadEvent, IntentError
from worker.events import dead_letter, format_ts, parse_event
from worker.features import EventCache, ModelInput, build_input
from worker.features.window import event_time_key
from worker.latest import LatestScore, RedisLatestScores, WriteBehind, stored_record
from worker.model.config import trained_horizon_s
from worker.outcomes.pending import Pending
from worker.outcomes.records import outcome_record
from worker.outcomes.redis_state import RedisOutcomeState
from worker.outcomes.tracker import OutcomeTracker, Resolution
from worker.scoring.records import explanation_record, score_id, score_record
from worker.scoring.scorer import AsyncScorer, ExplainingScorer, Scorer
from worker.settings import Settings
from worker.windows import RedisWindowStore, WindowStore

log = logging.getLogger(__name__)


class LiveSink(Protocol):
    """Where served scores and their outcomes go for the live figures
    (:class:`worker.outcomes.live.LiveQuality`)."""

    def add_scores(self, model: str, version: str, role: str,
                   scores: Sequence[float]) -> None: ...

    def add_outcomes(self, model: str, version: str, role: str, scores: Sequence[float],
                     labels: Sequence[int]) -> None: ...

    def figures(self) -> Sequence[object]: ...


def _horizon_s(scorer: object) -> int:
    """The champion's label horizon: the one it was trained for, else training's default."""
    return trained_horizon_s(scorer) or DEFAULT_HORIZON_S


def _by_model(pending: Iterable[Pending], labels: Iterable[int] = itertools.repeat(0)
              ) -> dict[tuple[str, str, str], tuple[list[float], list[int]]]:
    """Scores (and labels) by (model, version, role): the champion's of each, and the
    shadow's where it scored one."""
    groups: dict[tuple[str, str, str], tuple[list[float], list[int]]] = {}
    for p, label in zip(pending, labels, strict=False):
        roles = [((*p.model, "champion"), p.score)]
        if p.shadow is not None:
            roles.append(((p.shadow[0], p.shadow[1], "shadow"), p.shadow[2]))
        for key, score in roles:
            scores, got = groups.setdefault(key, ([], []))
            scores.append(score)
            got.append(label)
    return groups


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
    outcomes: list[Output] = field(default_factory=list)
    outcome_labels: list[int] = field(default_factory=list)
    # outcome state to write once the outcomes are delivered (Pipeline.confirm_outcomes)
    resolutions: list[Resolution] = field(default_factory=list)
    events: int = 0
    users: int = 0
    sequences: int = 0  # model inputs: one per user, plus out-of-character prior windows
    latencies_ms: list[int] = field(default_factory=list)  # per score record, as in the record
    store_s: float = 0.0
    model_s: float = 0.0
    detect_s: float = 0.0
    # outcome tracking on the batch's path: what is left of the state read once the model is
    # done, resolving, and the state write after delivery
    outcome_s: float = 0.0
    shadow_s: float = 0.0

    def copy(self) -> BatchResult:
        """A copy whose lists and dicts are new (``finish`` fills a copy, so a retry of it
        starts from what ``prepare`` left)."""
        out = BatchResult()
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(out, name, value.copy() if isinstance(value, list | dict) else value)
        return out

    def merge(self, other: BatchResult) -> None:
        """Add ``other`` (a later part of the same batch) to this result."""
        for name in ("scores", "dead_letters", "dead_letter_reasons", "alerts", "alert_kinds",
                     "latencies_ms", "latest", "outcomes", "outcome_labels", "resolutions"):
            getattr(self, name).extend(getattr(other, name))
        for user, state in other.cooldown_updates.items():
            self.cooldown_updates.setdefault(user, {}).update(state)
        for name in ("events", "users", "sequences", "store_s", "model_s", "detect_s",
                     "outcome_s", "shadow_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class _UserBatch:
    events: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    appended_at_ms: int = 0
    partition: tuple[str, int] = ("", 0)  # where the user's events come from
    tag: str = ""  # the outcome state's name of the user (an HMAC when pseudonymised): once
    newest: dict | None = None  # its newest event by event time (users whose scores get
    # outcomes: all, or a sample, INTENT_OUTCOME_SAMPLE)
    purchases: list[int] = field(default_factory=list)  # event times of its purchases here
    waits: bool = False  # its score waits for an outcome: tracked, newest not a purchase


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
    # each partition's outcome cutoff as of this batch's events (worker.outcomes.watermark)
    cutoffs: dict[tuple[str, int], int] = field(default_factory=dict)


class Pipeline:
    """Scores micro-batches of raw messages.

    ``scorer`` is read once per batch, so assigning a new one swaps the model
    between batches without a restart. ``event_cache`` keeps each window event's share of the
    model inputs for the next batches (default: ``INTENT_WINDOW_CACHE_EVENTS`` events, as the
    Redis store's decoded events, whose dicts come back batch after batch). ``latest`` keeps
    each user's newest published record for lookups (:meth:`keep_latest`). ``outcomes``
    resolves what became of each published score (:meth:`confirm_outcomes`); ``shadow`` is a
    challenger scored on the same inputs, whose scores reach only the outcomes and ``live``
    (the live-quality figures, :class:`worker.outcomes.live.LiveQuality`). Like ``scorer``,
    ``shadow`` is read once per batch.
    """

    def __init__(self, settings: Settings, *, store: WindowStore, scorer: Scorer,
                 executor: Executor | None = None, detector: BatchDetector | None = None,
                 event_cache: EventCache | None = None,
                 latest: WriteBehind | None = None, outcomes: OutcomeTracker | None = None,
                 shadow: Scorer | None = None, live: LiveSink | None = None) -> None:
        self._settings = settings
        self._store = store
        self.scorer = scorer
        self.shadow = shadow
        self.outcomes = outcomes
        self.live = live
        self.shadow_failures = 0
        self._executor = executor
        self._detector = detector
        self.latest = latest
        self._event_cache = (event_cache if event_cache is not None
                             else EventCache(settings.window_cache_events))

    @classmethod
    def from_settings(cls, settings: Settings, *, store: WindowStore, scorer: Scorer,
                      executor: Executor | None = None,
                      detector_state: DetectorState | None = None,
                      shadow: Scorer | None = None, live: LiveSink | None = None) -> Pipeline:
        """With the anomaly detectors of ``settings`` (unless ``INTENT_ANOMALY_ENABLED`` is off),
        their state kept beside ``store`` (default: :func:`~worker.anomaly.state.state_for`),
        and, on a Redis store, each user's latest score and pending outcomes (unless
        ``INTENT_OUTCOMES_ENABLED`` is off) kept beside the window."""
        detector = None
        if settings.anomaly_enabled:
            state = detector_state if detector_state is not None else state_for(store)
            detector = BatchDetector.from_settings(settings, state)
        latest = outcomes = None
        if isinstance(store, RedisWindowStore):
            latest = WriteBehind(RedisLatestScores.beside(store))
            # exactly-once: the state would be written before the transaction commits, and an
            # aborted one would lose its outcomes for good (worker/runtime.py says so at start)
            if settings.outcomes_enabled and settings.processing_guarantee == "at_least_once":
                outcomes = OutcomeTracker(
                    RedisOutcomeState.beside(store),
                    lateness_ms=settings.outcome_lateness_s * 1000,
                    max_pending=settings.outcome_max_pending,
                    sweep_users=settings.outcome_sweep_users, sample=settings.outcome_sample,
                    batch_max=settings.batch_max)
        return cls(settings, store=store, scorer=scorer, executor=executor, detector=detector,
                   latest=latest, outcomes=outcomes, shadow=shadow, live=live)

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
        seen: dict[tuple[str, int], list[int]] = {}  # event times by partition (watermarks)
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
                batch = users[event["user_id"]] = _UserBatch(partition=(msg.topic, msg.partition))
            if event["event_id"] not in batch.ids:  # a duplicate inside one batch counts once
                batch.ids.add(event["event_id"])
                batch.events.append(event)
            batch.appended_at_ms = max(batch.appended_at_ms, msg.timestamp_ms)
            seen.setdefault(batch.partition, []).append(event["ts"])
        cutoffs = {}
        if self.outcomes is not None:
            self.outcomes.watermarks.advance(seen)
            cutoffs = self.outcomes.watermarks.cutoffs()
            tag, tracks = self.outcomes.state.tag, self.outcomes.tracks
            for user, batch in users.items():
                batch.tag = tag(user)
                if tracks(batch.tag):  # one pass over the user's events for all outcome work
                    batch.newest = max(batch.events, key=event_time_key)
                    batch.purchases = [e["ts"] for e in batch.events if not is_example(e)]
                    batch.waits = is_example(batch.newest)
        result.events = sum(len(b.events) for b in users.values())
        result.users = len(users)
        scorer = self.scorer  # read once: a swap takes effect at the next batch
        if not users:
            return Prepared(result, scorer, users, cutoffs=cutoffs)

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
        return Prepared(result, scorer, users, new, got, priors, inputs, cutoffs)

    async def finish(self, prepared: Prepared) -> BatchResult:
        """The rest of a prepared batch: the model (and the shadow), score records, anomaly
        alerts, outcomes. The outcome state is read while the model runs."""
        scorer, users = prepared.scorer, prepared.users
        result = prepared.result.copy()  # a retried finish starts from prepare's result
        if not users:
            return result
        tracker = self.outcomes
        reading = (asyncio.ensure_future(self._read_outcomes(tracker, prepared, scorer))
                   if tracker is not None else None)
        try:
            waiting = await self._score(prepared, result)
            if self.live is not None and waiting:
                self._live_scores(waiting)
            if reading is not None:  # last: nothing may fail once the resolution is taken
                t0 = time.perf_counter()
                reads = await reading  # read while the model ran: what is left to wait, if any
                self._resolve(tracker, reads, prepared, waiting, result)
                result.outcome_s = time.perf_counter() - t0
        except BaseException:
            if reading is not None:
                if reading.done():
                    if not reading.cancelled():
                        reading.exception()  # retrieved: the batch's own error is raised
                else:
                    reading.cancel()
            raise
        return result

    async def _score(self, prepared: Prepared, result: BatchResult
                     ) -> list[tuple[tuple[str, int], Pending]]:
        """The model, the shadow, score records and alerts into ``result``; returns the new
        scores that wait for an outcome (with their source partition)."""
        scorer, users = prepared.scorer, prepared.users
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
        shadow = self.shadow
        shadow_scores = await self._shadow_scores(shadow, scorer, prepared, result)

        scored_at_ms = time.time_ns() // 1_000_000
        keep = self.latest is not None
        waiting: list[tuple[tuple[str, int], Pending]] = []
        horizon_ms = _horizon_s(scorer) * 1000
        for i, ((user_id, batch), score) in enumerate(zip(users.items(), scores, strict=True)):
            window = windows[user_id]
            record = score_record(
                user_id=user_id, covered=batch.events, window=window, score=score,
                model_name=scorer.name, model_version=scorer.version,
                scored_at_ms=scored_at_ms, appended_at_ms=batch.appended_at_ms,
                explanation=(explanation_record(explanations[i], window)
                             if explanations is not None else None),
            )
            result.scores.append(Output(user_id.encode(), orjson.dumps(record)))
            result.latencies_ms.append(record["latency_ms"])
            if keep:
                newest = batch.newest or max(batch.events, key=event_time_key)
                result.latest.append(LatestScore(user_id, newest["ts"], newest["event_id"],
                                                 stored_record(record)))
            if batch.waits:
                newest = batch.newest
                waiting.append((batch.partition, Pending(
                    record["score_id"], batch.tag, newest["event_id"],
                    newest["ts"], horizon_ms, record["score"], (scorer.name, scorer.version),
                    (shadow.name, shadow.version, shadow_scores[i])
                    if shadow_scores is not None and shadow_scores[i] is not None else None)))
        detector = self._detector
        if detector is not None:
            prior_scores = {p.purchase_id: s for p, s in zip(priors, all_scores[len(users):],
                                                             strict=True)}
            await self._detect(detector, result, prepared.new, prepared.exchanged, prior_scores,
                               scorer)
            result.detect_s += time.perf_counter() - t2
        return waiting

    def _read_outcomes(self, tracker: OutcomeTracker, prepared: Prepared, scorer: Scorer):
        """The outcome state this batch resolves against (a coroutine, run beside the model):
        the buyers' waiting scores, the partitions' due scores, and the stored state of the
        batch's new scores whose horizon is behind the watermark already."""
        # a partition revoked since prepare is its new owner's to sweep now
        cutoffs = {tp: cut for tp, cut in prepared.cutoffs.items()
                   if tracker.watermarks.get(*tp) is not None}
        horizon_ms = _horizon_s(scorer) * 1000
        purchasers, past_due = [], {}
        for batch in prepared.users.values():
            if batch.purchases:
                purchasers.append(batch.tag)
            cut = cutoffs.get(batch.partition)
            if cut is None or not batch.waits:
                continue
            if batch.newest["ts"] + horizon_ms < cut:
                sid = score_id(scorer.version, [e["event_id"] for e in batch.events])
                past_due.setdefault(batch.tag, []).append(sid)
        return tracker.read(purchasers, cutoffs, past_due)

    async def _shadow_scores(self, shadow: Scorer | None, scorer: Scorer, prepared: Prepared,
                             result: BatchResult) -> list[float | None] | None:
        """The shadow's scores of the batch's users whose scores will wait for an outcome
        (``None`` for the others), or ``None`` (no shadow, no outcomes, or it failed: a
        failing shadow never fails the champion's batch; its time is added to the batch's, so
        a slow one delays the batch's records by as much)."""
        if shadow is None or self.outcomes is None:
            return None
        users = list(prepared.users.items())
        picked = [i for i, (_, batch) in enumerate(users) if batch.waits]
        if not picked:
            return None
        same = (shadow.max_chars == scorer.max_chars and getattr(shadow, "phrase_price", None)
                == getattr(scorer, "phrase_price", None))
        t0 = time.perf_counter()
        try:
            if same:
                inputs = [prepared.inputs[i] for i in picked]
            else:  # another kind of input: built here, without the shared cache
                windows = prepared.exchanged.windows
                inputs = [build_input(windows[users[i][0]], max_chars=shadow.max_chars,
                                      phrase_price=getattr(shadow, "phrase_price", None))
                          for i in picked]
            got = await self._run_model(shadow, inputs)
            if len(got) != len(picked):
                raise RuntimeError(f"shadow returned {len(got)} scores for {len(picked)} inputs")
            out: list[float | None] = [None] * len(users)
            for i, score in zip(picked, got, strict=True):
                out[i] = min(1.0, max(0.0, float(score)))
            return out
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the champion's batch goes on without it
            self.shadow_failures += 1
            log.warning("shadow model %s %s failed on a batch (%s); its scores are left out",
                        shadow.name, shadow.version, type(exc).__name__)
            return None
        finally:
            result.shadow_s = time.perf_counter() - t0

    def _resolve(self, tracker: OutcomeTracker, reads, prepared: Prepared,
                 waiting: list[tuple[tuple[str, int], Pending]], result: BatchResult) -> None:
        purchases = {b.tag: b.purchases for b in prepared.users.values() if b.purchases}
        res = tracker.resolve(reads, purchases=purchases,
                              new=waiting, cutoffs=prepared.cutoffs)
        result.resolutions.append(res)
        produced_at = format_ts(time.time_ns() // 1_000_000)
        name = tracker.state.published_id
        for o in res.outcomes:
            user = name(o.pending.tag)
            record = outcome_record(o, user_id=user, produced_at=produced_at)
            result.outcomes.append(Output(user.encode(), orjson.dumps(record)))
            result.outcome_labels.append(o.label)

    def _live_scores(self, waiting: list[tuple[tuple[str, int], Pending]]) -> None:
        for (model, version, role), (scores, _) in _by_model(p for _, p in waiting).items():
            self.live.add_scores(model, version, role, scores)

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

    async def confirm_outcomes(self, result: BatchResult) -> None:
        """Call once the batch's outcomes were delivered: records their scores as resolved and
        the batch's new scores as waiting, then counts the outcomes into the live figures.
        Raises :class:`~worker.errors.StoreError` (retriable: every write is idempotent)."""
        if self.outcomes is None or not result.resolutions:
            return
        t0 = time.perf_counter()
        for res in result.resolutions:
            await self.outcomes.confirm(res)
        result.outcome_s += time.perf_counter() - t0
        if self.live is not None:
            outcomes = [o for res in result.resolutions for o in res.outcomes]
            groups = _by_model((o.pending for o in outcomes), (o.label for o in outcomes))
            for (model, version, role), (scores, labels) in groups.items():
                self.live.add_outcomes(model, version, role, scores, labels)
        result.resolutions = []  # confirmed: a retry of the caller's step does nothing again

    def keep_latest(self, result: BatchResult) -> None:
        """Call once the batch's score records were delivered: keeps each user's newest one for
        lookups, in the background (:class:`~worker.latest.WriteBehind`; never waits, never
        raises)."""
        if self.latest is not None and result.latest:
            self.latest.submit(result.latest)

    def latest_counts(self) -> tuple[int, int, int]:
        """Latest scores written, kept (a later one was stored) and failed, so far."""
        return self.latest.counts if self.latest is not None else (0, 0, 0)

    def outcome_trouble(self) -> tuple[int, int]:
        """Waiting scores dropped over the per-user bound, and batches whose shadow failed,
        so far."""
        dropped = self.outcomes.dropped if self.outcomes is not None else 0
        return dropped, self.shadow_failures

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

