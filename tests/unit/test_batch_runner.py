"""The batch runner's rules, with a fake pipeline, producer and consumer (no Kafka, no Redis).

Each fake writes what happens to one shared log, so a test can check the order of things:
``prepare X`` / ``finish X`` / ``finished X`` (the pipeline, ``X`` the batch's message values
joined by ``+``), ``send T`` / ``acked T`` (the producer and the broker's acknowledgement, per
topic ``T``), ``keep N`` (N score records handed over for lookups), ``confirm`` (cooldowns
recorded), ``ack X`` (the batch acknowledged to the consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import orjson
import pytest

from worker.errors import ModelError, StoreError
from worker.scoring.pipeline import BatchResult, Message, Output, Pipeline
from worker.scoring.runner import Batch, BatchRunner, OutputTopics, SystemicFailure
from worker.settings import load_settings
from worker.windows import MemoryWindowStore

TOPICS = OutputTopics(scores="scores", dead_letters="dlq", alerts="alerts")


class Exited(BaseException):
    """What the fake exit raises instead of ending the test process."""


def label(messages: Sequence[Message]) -> str:
    return "+".join(m.value.decode() for m in messages)


async def nothing(_: str) -> None:
    return None


class FakePipeline:
    """A score per message; an alert (with a cooldown update) per message named ``alert...``.

    ``before_prepare(label)`` and ``before_finish(label)`` run first in each stage: a test
    makes them fail or wait.
    """

    class scorer:  # noqa: N801 - the pipeline's attribute
        name, version = "fake", "1"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.before_prepare: Callable[[str], Awaitable[None]] = nothing
        self.before_finish: Callable[[str], Awaitable[None]] = nothing
        self.keep_fails = False

    async def prepare(self, messages: Sequence[Message]) -> list[Message]:
        self.log.append(f"prepare {label(messages)}")
        await self.before_prepare(label(messages))
        return list(messages)

    async def finish(self, prepared: list[Message]) -> BatchResult:
        self.log.append(f"finish {label(prepared)}")
        await self.before_finish(label(prepared))
        self.log.append(f"finished {label(prepared)}")
        result = BatchResult(events=len(prepared))
        for m in prepared:
            result.scores.append(Output(m.key, m.value))
            if m.value.startswith(b"alert"):
                result.alerts.append(Output(m.key, m.value))
                result.alert_kinds.append("bot_cadence")
                result.cooldown_updates[m.value.decode()] = {}
        return result

    async def process(self, messages: Sequence[Message]) -> BatchResult:
        return await self.finish(await self.prepare(messages))

    async def confirm(self, result: BatchResult) -> None:
        self.log.append("confirm")

    def keep_latest(self, result: BatchResult) -> None:
        self.log.append(f"keep {len(result.scores)}")
        if self.keep_fails:
            raise RuntimeError("bug in keeping the latest scores")

    def unprocessable(self, msg: Message, exc: BaseException) -> Output:
        return Output(msg.key, msg.value)


class FakeProducer:
    """Acknowledges each send a moment later (``acked T``), or fails it (``failed T``) while
    ``failures[T]`` says so."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.failures: dict[str, int] = {}
        self.never_ack: set[str] = set()
        self.sent: dict[str, list[bytes]] = {}

    async def send(self, topic: str, records: Sequence[Output]) -> list[Awaitable[object]]:
        if not records:
            return []
        self.log.append(f"send {topic}")
        self.sent.setdefault(topic, []).extend(r.value for r in records)
        loop = asyncio.get_running_loop()
        acks = [loop.create_future() for _ in records]
        if topic not in self.never_ack:
            fail = self.failures.get(topic, 0) > 0
            if fail:
                self.failures[topic] -= 1
            loop.call_later(0.005, self._acknowledge, topic, acks, fail)
        return acks

    def _acknowledge(self, topic: str, acks: list[asyncio.Future], fail: bool) -> None:
        self.log.append(f"{'failed' if fail else 'acked'} {topic}")
        for ack in acks:
            if fail:
                ack.set_exception(ConnectionError("broker gone"))
            else:
                ack.set_result(None)


class Harness:
    def __init__(self, *, pipeline: object | None = None, transactional: bool = False,
                 observe: Callable | None = None) -> None:
        self.log: list[str] = []
        self.pipeline = pipeline if pipeline is not None else FakePipeline(self.log)
        self.producer = FakeProducer(self.log)
        self.exit_codes: list[int] = []
        self.retries: list[BaseException] = []
        self.acked: list[str] = []
        self.expected = 0
        self.settled = asyncio.Event()  # every batch acknowledged, or the process stopped
        self.runner = BatchRunner(
            self.pipeline, self.producer, TOPICS, transactional=transactional,
            observe=observe, on_retry=self.retries.append, exit_process=self._exit,
            first_pause_s=0.001, retry_max_s=0.005, deliver_max_s=0.005)

    def _exit(self, code: int):
        self.exit_codes.append(code)
        self.settled.set()
        raise Exited(code)

    def _ack(self, name: str) -> None:
        self.log.append(f"ack {name}")
        self.acked.append(name)
        if len(self.acked) >= self.expected:
            self.settled.set()

    async def run(self, *batches: list[str], overlap: bool = False) -> None:
        """Hand ``batches`` (message values) to :meth:`BatchRunner.run` as a consumer would;
        return once each was acknowledged or the runner stopped the process."""

        self.expected, self.acked[:] = len(batches), []
        self.settled.clear()

        async def source():
            for i, values in enumerate(batches):
                messages = [Message(key=b"k", value=v.encode(), topic="clickstream", partition=0,
                                    offset=100 * i + j, timestamp_ms=0)
                            for j, v in enumerate(values)]
                yield Batch(messages, partial(self._ack, "+".join(values)))
            await self.settled.wait()  # then the stream ends, and with it the runner

        with contextlib.suppress(Exited):
            await asyncio.wait_for(
                self.runner.run(source(), want_batch=lambda: None, overlap=overlap), timeout=5)

    def index(self, entry: str) -> int:
        assert entry in self.log, (entry, self.log)
        return self.log.index(entry)


def failing(times: int, exc: Callable[[], Exception], only: str | None = None):
    """A pipeline hook that raises ``exc()`` the first ``times`` calls (for batch ``only``)."""
    left = [times]

    async def hook(name: str) -> None:
        if (only is None or name == only) and left[0] > 0:
            left[0] -= 1
            raise exc()

    return hook


@pytest.mark.parametrize("overlap", [False, True])
async def test_a_retriable_failure_is_retried_and_the_batch_acknowledged_once_done(overlap):
    h = Harness()
    h.pipeline.before_prepare = failing(3, lambda: StoreError("redis is down"))
    await h.run(["a", "b"], overlap=overlap)
    assert len(h.retries) == 2  # the first failure was the prepare of the two-stage loop
    assert h.producer.sent == {"scores": [b"a", b"b"]}  # no dead letter
    assert h.acked == ["a+b"] and not h.exit_codes


async def test_a_retriable_failure_while_finishing_is_retried_without_preparing_again():
    h = Harness()
    h.pipeline.before_finish = failing(2, lambda: StoreError("redis is down"))
    await h.run(["a", "b"])
    assert h.log.count("prepare a+b") == 1 and len(h.retries) == 2
    assert h.producer.sent == {"scores": [b"a", b"b"]} and h.acked == ["a+b"]


@pytest.mark.parametrize("overlap", [False, True])
async def test_a_systemic_failure_stops_the_worker_without_acknowledging(overlap):
    h = Harness()

    async def broken(name: str) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    h.pipeline.before_finish = broken
    await h.run(["a", "b", "c"], overlap=overlap)
    assert h.exit_codes == [70]
    assert h.acked == [] and h.producer.sent == {}


async def test_a_systemic_failure_stops_the_worker_in_fausts_stream_too():
    h = Harness(transactional=True)

    async def broken(name: str) -> None:
        raise RuntimeError("CUDA error")

    h.pipeline.before_finish = broken
    messages = [Message(b"k", v, "clickstream", 0, i, 0) for i, v in enumerate([b"a", b"b"])]
    with pytest.raises(Exited):
        await h.runner.process(messages)
    assert h.exit_codes == [70] and h.producer.sent == {}


@pytest.mark.parametrize("overlap", [False, True])
async def test_isolation_dead_letters_only_the_culprit(overlap):
    h = Harness()

    async def poisoned(name: str) -> None:
        if "poison" in name.split("+"):
            raise ValueError("model blew up")

    h.pipeline.before_finish = poisoned
    await h.run(["a", "poison", "b"], overlap=overlap)
    assert h.producer.sent == {"scores": [b"a", b"b"], "dlq": [b"poison"]}
    assert h.acked == ["a+poison+b"] and not h.exit_codes


async def test_a_batch_of_one_that_fails_is_dead_lettered_not_systemic():
    h = Harness()
    h.pipeline.before_finish = failing(99, lambda: ValueError("bad"))
    await h.run(["a"])
    assert h.producer.sent == {"dlq": [b"a"]} and h.acked == ["a"] and not h.exit_codes


@pytest.mark.parametrize("overlap", [False, True])
async def test_alerts_are_delivered_before_their_cooldowns_are_recorded(overlap):
    h = Harness()
    await h.run(["a", "alert-1"], overlap=overlap)
    assert h.producer.sent["alerts"] == [b"alert-1"]
    assert h.index("acked alerts") < h.index("confirm") < h.index("ack a+alert-1")


@pytest.mark.parametrize("overlap", [False, True])
async def test_score_records_are_kept_for_lookups_only_once_delivered(overlap):
    h = Harness()
    h.producer.failures = {"scores": 1}
    await h.run(["a", "b"], ["c"], overlap=overlap)
    assert h.log.count("keep 2") == 1 and h.log.count("keep 1") == 1
    assert h.index("failed scores") < h.index("acked scores") < h.index("keep 2")
    assert h.index("keep 2") < h.index("ack a+b")


async def test_keeping_the_latest_scores_never_fails_a_batch():
    h = Harness()
    h.pipeline.keep_fails = True
    await h.run(["a"], ["b"])
    assert h.acked == ["a", "b"] and not h.exit_codes
    assert h.producer.sent == {"scores": [b"a", b"b"]}


async def test_a_failed_alert_delivery_is_retried_before_the_cooldowns_are_recorded():
    h = Harness()
    h.producer.failures = {"alerts": 1}
    await h.run(["alert-1"])
    assert h.log.count("send alerts") == 2
    assert h.index("failed alerts") < h.index("acked alerts") < h.index("confirm")
    assert h.index("confirm") < h.index("ack alert-1")


async def test_overlap_prepares_the_next_batch_while_one_finishes_two_in_flight_at_most():
    h = Harness()

    async def slow(name: str) -> None:
        await asyncio.sleep(0.05)

    h.pipeline.before_finish = slow
    await h.run(["1"], ["2"], ["3"], overlap=True)
    assert h.acked == ["1", "2", "3"]
    # batch 2 is prepared while batch 1 is in the model ...
    assert h.index("finish 1") < h.index("prepare 2") < h.index("finished 1")
    # ... but batch 3 waits until batch 1 is through
    assert h.index("ack 1") < h.index("prepare 3")
    assert h.index("prepare 3") < h.index("finished 2")


async def test_without_overlap_one_batch_at_a_time():
    h = Harness()
    await h.run(["1"], ["2"], overlap=False)
    assert h.index("ack 1") < h.index("prepare 2")


async def test_after_a_failed_prepare_the_next_batch_waits_until_the_failed_one_is_through():
    h = Harness()
    h.pipeline.before_prepare = failing(1, lambda: StoreError("redis blinked"), only="2")

    async def slow(name: str) -> None:
        await asyncio.sleep(0.03)

    h.pipeline.before_finish = slow
    await h.run(["1"], ["2"], ["3"], overlap=True)
    assert h.acked == ["1", "2", "3"]
    # batch 2's fallback prepares it again: batch 3 must not be in the windows yet
    assert h.index("ack 2") < h.index("prepare 3")


@pytest.mark.parametrize("overlap", [False, True])
async def test_a_failed_delivery_is_retried_and_the_batch_acknowledged_only_after(overlap):
    h = Harness()
    h.producer.failures = {"scores": 1}
    await h.run(["a", "b"], overlap=overlap)
    assert h.producer.sent == {"scores": [b"a", b"b", b"a", b"b"]}  # sent again, same records
    assert h.index("failed scores") < h.index("acked scores") < h.index("ack a+b")
    assert h.acked == ["a+b"] and not h.exit_codes


async def test_exactly_once_hands_scores_to_the_transaction_without_waiting():
    h = Harness(transactional=True)
    h.producer.never_ack = {"scores"}  # acknowledged when the transaction commits, later
    messages = [Message(b"k", b"a", "clickstream", 0, 0, 0)]
    await asyncio.wait_for(h.runner.process(messages), timeout=2)
    assert h.producer.sent == {"scores": [b"a"]}


async def test_a_failing_metric_never_stops_the_stream():
    def observe(messages, result, seconds):
        raise RuntimeError("metric bug")

    h = Harness(observe=observe)
    await h.run(["1"], ["2"])
    assert h.acked == ["1", "2"] and not h.exit_codes


# The rules again with the real pipeline (memory store, fake scorer).

class RecordingScorer:
    name, version, max_chars = "fake", "1.2.3", 500

    def score(self, inputs) -> list[float]:
        return [0.5] * len(inputs)


def ev(eid: str, user: str, ts: int = 1_700_000_000_000, **extra) -> bytes:
    doc = {"event_id": eid, "user_id": user, "event_type": "view", "ts": ts,
           "product": {"id": "p1", "title": "Phone", "price": 100.0}} | extra
    return orjson.dumps(doc)


def msgs(values: list[bytes]) -> list[Message]:
    return [Message(key=b"k", value=v, topic="clickstream", partition=0, offset=i,
                    timestamp_ms=1_700_000_000_000 + i) for i, v in enumerate(values)]


@pytest.fixture
def real():
    settings = load_settings(window_max_events=5, window_seconds=3600)
    scorer = RecordingScorer()
    pipeline = Pipeline(settings, store=MemoryWindowStore.from_settings(settings), scorer=scorer)
    h = Harness(pipeline=pipeline)
    return h, pipeline, scorer


async def test_retriable_store_failures_are_retried_until_the_batch_succeeds(real):
    h, pipe, _ = real
    real_append = pipe._store.append
    failures = {"left": 3}

    async def flaky(batch):
        if failures["left"]:
            failures["left"] -= 1
            raise StoreError("redis is down")
        return await real_append(batch)

    pipe._store.append = flaky
    result = await h.runner.isolate(msgs([ev("a1", "u1")]))
    assert failures["left"] == 0 and len(h.retries) == 3
    assert [orjson.loads(o.value)["event_ids"] for o in result.scores] == [["a1"]]


async def test_errors_that_retrying_cannot_fix_are_not_retried(real):
    h, pipe, _ = real

    async def broken(batch):
        raise ModelError("bad model")

    pipe._store.append = broken
    result = await h.runner.isolate(msgs([ev("a1", "u1")]))
    assert h.retries == [] and result.dead_letter_reasons == ["internal_error"]


async def test_a_batch_failing_for_good_is_split_and_only_the_culprit_dead_lettered(real):
    h, _, scorer = real
    real_score = scorer.score

    def score(inputs):
        if any("poisoned" in i.text.lower() for i in inputs):
            raise ValueError("model blew up")
        return real_score(inputs)

    scorer.score = score
    batch = msgs([ev("a1", "u1"), ev("x1", "u9", product={"id": "p9", "title": "Poisoned"}),
                  ev("b1", "u2")])
    result = await h.runner.isolate(batch)
    assert sorted(orjson.loads(o.value)["user_id"] for o in result.scores) == ["u1", "u2"]
    assert result.dead_letter_reasons == ["internal_error"]
    letter = orjson.loads(result.dead_letters[0].value)
    assert letter["offset"] == 1 and "ValueError" in letter["detail"]


async def test_a_batch_where_every_message_fails_the_same_way_is_systemic(real):
    h, _, scorer = real

    def broken(inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    scorer.score = broken
    with pytest.raises(SystemicFailure, match="every one of 3 messages failed with RuntimeError"):
        await h.runner.isolate(msgs([ev("a1", "u1"), ev("b1", "u2"), ev("c1", "u3")]))


@pytest.mark.parametrize("overlap", [False, True])
async def test_failed_deliveries_are_reported_one_by_one_not_as_batch_retries(overlap):
    h = Harness()
    delivery_retries: list[BaseException] = []
    h.runner._on_delivery_retry = delivery_retries.append
    h.producer.failures = {"scores": 3}
    await h.run(["a", "b"], overlap=overlap)
    assert len(delivery_retries) == 3 and not h.retries
    assert all(isinstance(e, ConnectionError) for e in delivery_retries)
    assert h.acked == ["a+b"]


@pytest.mark.parametrize("overlap", [False, True])
async def test_a_stuck_batch_shows_as_in_flight_until_acknowledged(overlap):
    h = Harness()
    model_answers = asyncio.Event()

    async def hung(name: str) -> None:
        await model_answers.wait()

    h.pipeline.before_finish = hung
    assert h.runner.in_flight_s() == 0.0
    running = asyncio.ensure_future(h.run(["a"], overlap=overlap))
    await asyncio.sleep(0.1)
    first = h.runner.in_flight_s()
    await asyncio.sleep(0.1)
    assert 0.1 <= first < h.runner.in_flight_s()  # the age grows while it is stuck
    assert h.acked == []
    model_answers.set()
    await running
    assert h.acked == ["a"] and h.runner.in_flight_s() == 0.0


async def test_in_flight_is_the_age_of_the_oldest_batch_taken():
    h = Harness()
    seen: dict[str, float] = {}

    async def slow(name: str) -> None:
        await asyncio.sleep(0.1 if name == "1" else 0.0)
        seen[name] = h.runner.in_flight_s()

    h.pipeline.before_finish = slow
    await h.run(["1"], ["2"])
    assert seen["1"] >= 0.1  # batch 1 has waited in the model that long
    assert 0 <= seen["2"] < 0.05  # batch 1 is acknowledged: batch 2's own age
    assert h.runner.in_flight_s() == 0.0


async def test_a_batch_in_fausts_stream_is_in_flight_until_published():
    h = Harness(transactional=True)
    seen: list[float] = []

    async def slow(name: str) -> None:
        await asyncio.sleep(0.05)
        seen.append(h.runner.in_flight_s())

    h.pipeline.before_finish = slow
    await h.runner.process([Message(b"k", b"a", "clickstream", 0, 0, 0)])
    assert seen[0] >= 0.05 and h.runner.in_flight_s() == 0.0
