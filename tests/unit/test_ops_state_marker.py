"""StateMarker: when a worker says Redis lost its state, against a fake Redis.

The fake runs the marker script's semantics (read, or create when missing) on a dict shared
by several markers, the way several workers share one Redis.
"""

from __future__ import annotations

import itertools
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.errors import StoreError
from worker.ops.state_marker import MARKER_SCRIPT, StateMarker

KEY = "iw:state:epoch"


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False

    async def eval(self, script: str, numkeys: int, key: str, epoch: str) -> list:
        assert script == MARKER_SCRIPT and numkeys == 1
        if self.down:
            raise RedisConnectionError("Connection refused")
        if key in self.data:
            return [self.data[key], 0]
        self.data[key] = epoch.encode()
        return [epoch.encode(), 1]


_epochs = itertools.count()


def marker(redis: FakeRedis) -> StateMarker:
    return StateMarker(redis, KEY, epoch_factory=lambda: f"epoch-{next(_epochs)}")


async def test_the_first_look_creates_the_marker_and_reports_nothing() -> None:
    redis = FakeRedis()
    first = marker(redis)
    assert await first.check() is False
    assert redis.data[KEY] == first.epoch.encode()
    second = marker(redis)  # a worker started later finds it
    assert await second.check() is False
    assert second.epoch == first.epoch and first.losses == second.losses == 0


async def test_the_same_epoch_again_is_no_loss() -> None:
    redis = FakeRedis()
    m = marker(redis)
    await m.check()
    for _ in range(3):
        assert await m.check() is False
    assert m.losses == 0


async def test_a_missing_marker_is_one_loss_logged_once_and_re_created(caplog) -> None:
    redis = FakeRedis()
    m = marker(redis)
    await m.check()
    before = m.epoch
    redis.data.clear()  # Redis restarted empty
    with caplog.at_level(logging.WARNING, logger="worker.ops.state_marker"):
        assert await m.check() is True
        assert await m.check() is False  # the re-created marker is the one it now knows
    assert m.losses == 1 and m.epoch != before and redis.data[KEY] == m.epoch.encode()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Redis lost the worker's state (marker {KEY} is gone, re-created here): "
                        "windows, alert cooldowns and outcome state start empty; scoring goes "
                        "on with windows rebuilt from new events"]


async def test_every_worker_notices_though_only_the_first_re_creates_the_marker(caplog) -> None:
    redis = FakeRedis()
    workers = [marker(redis) for _ in range(3)]
    for w in workers:
        await w.check()
    redis.data.clear()
    with caplog.at_level(logging.WARNING, logger="worker.ops.state_marker"):
        assert [await w.check() for w in workers] == [True, True, True]
    assert [w.losses for w in workers] == [1, 1, 1]
    assert len({w.epoch for w in workers}) == 1  # the first one's new epoch
    messages = [r.getMessage() for r in caplog.records]
    assert sum("re-created here" in m for m in messages) == 1
    assert sum("re-created by another worker" in m for m in messages) == 2


async def test_redis_down_raises_and_changes_nothing() -> None:
    redis = FakeRedis()
    m = marker(redis)
    await m.check()
    epoch = m.epoch
    redis.down = True
    with pytest.raises(StoreError, match="Connection refused"):
        await m.check()
    redis.down = False
    assert await m.check() is False and m.epoch == epoch and m.losses == 0


async def test_a_loss_while_redis_was_down_is_seen_once_it_answers() -> None:
    redis = FakeRedis()
    m = marker(redis)
    await m.check()
    redis.down = True
    with pytest.raises(StoreError):
        await m.check()
    redis.data.clear()
    redis.down = False
    assert await m.check() is True and m.losses == 1


def test_the_marker_key_holds_no_user_and_no_hash_tag() -> None:
    from worker.settings import load_settings
    from worker.windows import RedisWindowStore

    store = RedisWindowStore.from_settings(load_settings(key_prefix="shop1"))
    m = StateMarker.for_store(store)
    assert m.key == "shop1:state:epoch"
