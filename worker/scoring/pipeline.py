"""One micro-batch: validate -> window -> features -> model -> records.

Framework-free: the Faust agent (``worker.app``) hands in the messages of a batch
and publishes what comes out, so this runs the same in the worker, in replays
and in unit tests with a memory store.
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

from worker.errors import BadEvent, IntentError
from worker.events import dead_letter, parse_event
from worker.features import ModelInput, build_input
from worker.scoring.records import score_record
from worker.scoring.scorer import Scorer
from worker.settings import Settings
from worker.windows import WindowStore

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
    events: int = 0
    users: int = 0
    store_s: float = 0.0
    model_s: float = 0.0


@dataclass(slots=True)
class _UserBatch:
    events: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    appended_at_ms: int = 0


class Pipeline:
    """Scores micro-batches of raw messages.

    ``scorer`` is read once per batch, so assigning a new one swaps the model
    between batches without a restart.
    """

    def __init__(self, settings: Settings, *, store: WindowStore, scorer: Scorer,
                 executor: Executor | None = None) -> None:
        self._settings = settings
        self._store = store
        self.scorer = scorer
        self._executor = executor

    async def process(self, messages: Sequence[Message]) -> BatchResult:
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
            batch = users.get(event["user_id"])
            if batch is None:
                batch = users[event["user_id"]] = _UserBatch()
            if event["event_id"] not in batch.ids:  # a duplicate inside one batch counts once
                batch.ids.add(event["event_id"])
                batch.events.append(event)
            batch.appended_at_ms = max(batch.appended_at_ms, msg.timestamp_ms)
        result.events = sum(len(b.events) for b in users.values())
        result.users = len(users)
        if not users:
            return result

        t0 = time.perf_counter()
        windows = await self._store.append({u: b.events for u, b in users.items()})
        t1 = time.perf_counter()
        result.store_s = t1 - t0

        order = list(users)
        scorer = self.scorer  # read once: a swap takes effect at the next batch
        inputs: list[ModelInput] = [build_input(windows[u], max_chars=scorer.max_chars) for u in order]
        scores = await self._run_model(scorer, inputs)
        result.model_s = time.perf_counter() - t1
        if len(scores) != len(inputs):
            raise RuntimeError(f"scorer returned {len(scores)} scores for {len(inputs)} inputs")

        scored_at_ms = time.time_ns() // 1_000_000
        for user_id, score in zip(order, scores, strict=True):
            batch = users[user_id]
            record = score_record(
                user_id=user_id, covered=batch.events, window=windows[user_id], score=score,
                model_name=scorer.name, model_version=scorer.version,
                scored_at_ms=scored_at_ms, appended_at_ms=batch.appended_at_ms,
            )
            result.scores.append(Output(user_id.encode(), orjson.dumps(record)))
        return result

    async def ping_store(self) -> None:
        """Raises when the window store does not answer (readiness checks)."""
        await self._store.ping()

    async def _run_model(self, scorer: Scorer, inputs: list[ModelInput]) -> list[float]:
        # Off the event loop: the consumer keeps heartbeating during a long forward pass.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, scorer.score, inputs)

    def _dead_letter(self, msg: Message, exc: BadEvent, received_at: datetime) -> Output:
        record = dead_letter(
            raw=msg.value, key=msg.key, reason=exc.reason, detail=exc.detail, topic=msg.topic,
            partition=msg.partition, offset=msg.offset, received_at=received_at,
            payload_max=self._settings.dlq_payload_bytes,
        )
        return Output(msg.key, orjson.dumps(record))


async def process_until_done(pipeline: Pipeline, messages: Sequence[Message], *,
                             max_delay_s: float = 10.0) -> BatchResult:
    """Process a batch, retrying retriable failures (Redis down, ...) with backoff.

    The batch is not acknowledged while this waits, so no offset moves past events
    without outputs; the event loop stays free, so the consumer keeps heartbeating.
    Errors that retrying cannot fix are raised.
    """
    delay = 0.1
    while True:
        try:
            return await pipeline.process(messages)
        except IntentError as exc:
            if not exc.retriable:
                raise
            log.warning("batch of %d failed (%s); retrying in %.1fs", len(messages), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
