"""The worker's one retry-with-backoff, built on ``tenacity``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


async def retry(call: Callable[[], Awaitable[T]], *, when: Callable[[BaseException], bool],
                first_s: float, max_s: float, timeout_s: float | None = None,
                on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """``await call()``, called again after a pause while it raises an error ``when`` accepts;
    any other error (and cancellation) is raised at once.

    The pauses start at ``first_s`` and double up to ``max_s``. Without ``timeout_s`` this
    retries until the call succeeds. With it, it gives up once ``timeout_s`` seconds (monotonic)
    have passed since the first try, raising the last error; the last pause is cut so that a
    last try lands on the deadline, so a service gets the whole timeout to come up.
    ``on_retry(error, pause_s)`` runs before each pause (logs, metrics).
    """
    growing = tenacity.wait_exponential(multiplier=first_s, max=max_s)

    def pause(state: tenacity.RetryCallState) -> float:
        if timeout_s is None:
            return growing(state)
        return min(growing(state), max(0.0, timeout_s - (state.seconds_since_start or 0.0)))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.outcome.exception(), state.next_action.sleep)

    async def attempt() -> T:  # a coroutine function: tenacity would not await a lambda's result
        return await call()

    retrying = tenacity.AsyncRetrying(
        # only errors: a cancellation (a BaseException) must end the retries
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, Exception) and when(exc)),
        wait=pause,
        stop=tenacity.stop_never if timeout_s is None else tenacity.stop_after_delay(timeout_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
