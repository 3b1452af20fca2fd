"""Latest scores kept behind the stream: the write-behind with a fake store, and the pipeline's
part (which record of a batch is kept), with a memory window store. No Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from tests.unit.test_scoring_pipeline import RecordingScorer, ev, msgs
from worker.errors import StoreError
from worker.latest import LatestScore, WriteBehind
from worker.scoring.pipeline import Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000


def latest(user: str, ts: int, eid: str) -> LatestScore:
    return LatestScore(user, ts, eid, orjson.dumps({"user_id": user, "event_id": eid}))


class FakeStore:
    """Keeps the later record per user, as the Redis script does; a write waits for ``gate``
    while it is set, and fails while ``failures`` > 0."""

    def __init__(self) -> None:
        self.stored: dict[str, LatestScore] = {}
        self.writes: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None
        self.failures = 0

    async def write(self, scores: Sequence[LatestScore]) -> int:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.writes.append([f"{s.user_id}:{s.event_id}" for s in scores])
            if self.failures:
                self.failures -= 1
                raise StoreError("redis is down")
            written = 0
            for s in scores:
                held = self.stored.get(s.user_id)
                if held is None or s.order() > held.order():
                    self.stored[s.user_id] = s
                    written += 1
            return written
        finally:
            self.in_flight -= 1


async def test_submit_returns_at_once_and_the_write_follows_in_the_background():
    store = FakeStore()
    store.gate = asyncio.Event()
    writer = WriteBehind(store)
    writer.submit([latest("u1", T0, "a"), latest("u2", T0, "b")])
    await asyncio.sleep(0.01)
    assert not store.stored  # the write waits on Redis, the caller did not
    store.gate.set()
    assert await writer.flush(timeout_s=1)
    assert set(store.stored) == {"u1", "u2"} and writer.counts == (2, 0, 0)


async def test_one_write_in_flight_and_the_later_record_of_a_user_pending():
    store = FakeStore()
    store.gate = asyncio.Event()
    writer = WriteBehind(store)
    writer.submit([latest("u1", T0, "a")])
    await asyncio.sleep(0)
    writer.submit([latest("u1", T0 + 2, "c"), latest("u2", T0, "x")])
    writer.submit([latest("u1", T0 + 1, "b")])  # older than the pending one: dropped
    writer.submit([latest("u2", T0 + 2, "z"), latest("u2", T0 + 2, "y")])  # ties: by id
    store.gate.set()
    assert await writer.flush(timeout_s=1)
    assert store.writes == [["u1:a"], ["u1:c", "u2:z"]]
    assert store.most_in_flight == 1
    assert store.stored["u1"].event_id == "c"


async def test_a_failed_write_is_counted_and_logged_never_raised(caplog):
    store = FakeStore()
    store.failures = 1
    writer = WriteBehind(store)
    writer.submit([latest("u1", T0, "a"), latest("u2", T0, "b")])
    assert await writer.flush(timeout_s=1)
    assert writer.counts == (0, 0, 2)
    assert "latest scores" in caplog.text and "redis is down" in caplog.text
    writer.submit([latest("u1", T0 + 1, "c")])  # the next score writes again
    assert await writer.flush(timeout_s=1)
    assert writer.counts == (1, 0, 2) and store.stored["u1"].event_id == "c"


async def test_a_record_older_than_the_stored_one_is_counted_as_kept():
    store = FakeStore()
    writer = WriteBehind(store)
    writer.submit([latest("u1", T0 + 5, "b")])
    await writer.flush()
    writer.submit([latest("u1", T0, "a")])  # a redelivered older batch
    await writer.flush()
    assert writer.counts == (1, 1, 0) and store.stored["u1"].event_id == "b"


async def test_flush_gives_up_after_its_timeout():
    store = FakeStore()
    store.gate = asyncio.Event()
    writer = WriteBehind(store)
    writer.submit([latest("u1", T0, "a")])
    assert not await writer.flush(timeout_s=0.01)
    store.gate.set()
    assert await writer.flush(timeout_s=1)


@pytest.fixture
def kept():
    settings = load_settings(window_max_events=5, window_seconds=3600)
    store = FakeStore()
    writer = WriteBehind(store)
    pipe = Pipeline(settings, store=MemoryWindowStore.from_settings(settings),
                    scorer=RecordingScorer(), latest=writer)
    return pipe, writer, store


async def test_the_pipeline_keeps_each_users_published_record_by_its_newest_event(kept):
    pipe, writer, store = kept
    result = await pipe.process(msgs([ev("a2", "u1", T0 + 2), ev("a1", "u1", T0 + 9),
                                      ev("a3", "u1", T0 + 9), ev("b1", "u2", T0)]))
    published = {orjson.loads(o.value)["user_id"]: orjson.loads(o.value) for o in result.scores}
    assert [(s.user_id, s.event_ts_ms, s.event_id) for s in result.latest] == [
        ("u1", T0 + 9, "a3"), ("u2", T0, "b1")]  # ties in event time by event id
    # the published record less its user id (the key names the user)
    assert {s.user_id: orjson.loads(s.record) for s in result.latest} == {
        u: {k: v for k, v in r.items() if k != "user_id"} for u, r in published.items()}
    assert not store.writes  # nothing kept before delivery
    pipe.keep_latest(result)
    await writer.flush(timeout_s=1)
    assert {u: orjson.loads(s.record)["score_id"] for u, s in store.stored.items()} == {
        u: r["score_id"] for u, r in published.items()}
    assert pipe.latest_counts() == (2, 0, 0)


async def test_without_a_redis_store_nothing_is_kept():
    settings = load_settings()
    pipe = Pipeline.from_settings(settings, store=MemoryWindowStore.from_settings(settings),
                                  scorer=RecordingScorer())
    result = await pipe.process(msgs([ev("a1", "u1", T0)]))
    assert pipe.latest is None and not result.latest
    pipe.keep_latest(result)
    assert pipe.latest_counts() == (0, 0, 0)
