"""The one retry-with-backoff (worker.backoff.retry)."""

from __future__ import annotations

import asyncio
import time

import pytest

from worker.backoff import retry
from worker.errors import ModelError, StoreError


def retriable(exc: BaseException) -> bool:
    return isinstance(exc, StoreError)


class Flaky:
    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.left = failures
        self.exc = exc or StoreError("down")
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if self.left:
            self.left -= 1
            raise self.exc
        return "done"


async def test_pauses_double_up_to_the_maximum_and_the_call_succeeds() -> None:
    flaky, pauses = Flaky(5), []
    result = await retry(flaky, when=retriable, first_s=0.001, max_s=0.004,
                         on_retry=lambda exc, s: pauses.append((type(exc), s)))
    assert result == "done" and len(flaky.calls) == 6
    assert pauses == [(StoreError, s) for s in (0.001, 0.002, 0.004, 0.004, 0.004)]


async def test_errors_it_does_not_accept_are_raised_at_once() -> None:
    flaky = Flaky(5, ModelError("bad model"))
    with pytest.raises(ModelError):
        await retry(flaky, when=retriable, first_s=0.001, max_s=0.01)
    assert len(flaky.calls) == 1


async def test_with_a_timeout_it_tries_until_the_deadline_and_raises_the_last_error() -> None:
    flaky, pauses = Flaky(1000), []
    t0 = time.monotonic()
    with pytest.raises(StoreError):
        await retry(flaky, when=retriable, first_s=0.1, max_s=5.0, timeout_s=0.5,
                    on_retry=lambda exc, s: pauses.append(s))
    assert 0.5 <= time.monotonic() - t0 < 0.9
    assert flaky.calls[-1] - t0 >= 0.5  # a last try on the deadline
    assert pauses[:2] == [0.1, 0.2] and pauses[2] < 0.4  # the last pause cut to the deadline


async def test_cancellation_is_not_retried() -> None:
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(retry(hangs, when=lambda exc: True, first_s=0.001, max_s=0.01))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
