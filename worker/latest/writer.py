"""Latest scores written behind the stream: a batch hands its records over and goes on.

The records were published already when they reach :meth:`WriteBehind.submit`, so keeping them
for lookups must neither delay nor fail a batch: ``submit`` returns at once, and one background
task writes what is pending in one store call (one pipeline), then what arrived meanwhile. At
most one write is in flight; while it runs, newer records of a user replace the pending one,
so a slow Redis makes the writes larger, never more numerous, and holds at most one record per
active user. A failed write is logged and counted, never raised: the user's next score writes
again, and a lookup meanwhile returns the previous record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from worker.errors import IntentError
from worker.latest.store import LatestScore

__all__ = ["LatestScoreStore", "WriteBehind"]

log = logging.getLogger(__name__)


class LatestScoreStore(Protocol):
    async def write(self, scores: Sequence[LatestScore]) -> int:
        """Keep each record unless a later one of its user is stored; return how many were
        written. Raises :class:`~worker.errors.StoreError` on failure."""
        ...


class WriteBehind:
    """Writes latest scores to ``store`` in the background (see the module docstring).

    Counts, in records: ``written`` (stored), ``kept`` (a later record was there: left alone),
    ``failed`` (the write failed; dropped).
    """

    def __init__(self, store: LatestScoreStore) -> None:
        self.store = store
        self._pending: dict[str, LatestScore] = {}
        self._task: asyncio.Task | None = None
        self.written = 0
        self.kept = 0
        self.failed = 0

    def submit(self, scores: Iterable[LatestScore]) -> None:
        """Queue ``scores`` for writing and return at once (call on the event loop)."""
        pending = self._pending
        for score in scores:
            held = pending.get(score.user_id)
            if held is None or score.order() > held.order():
                pending[score.user_id] = score
        if pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._drain())

    @property
    def counts(self) -> tuple[int, int, int]:
        """``(written, kept, failed)`` so far."""
        return self.written, self.kept, self.failed

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is pending or in flight (shutdown, tests); ``False`` if
        ``timeout_s`` passed first (the write goes on)."""
        task = self._task
        if task is None:
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        return bool(done)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = list(self._pending.values()), {}
            try:
                written = await self.store.write(batch)
            except IntentError as exc:
                self.failed += len(batch)
                log.warning("keeping %d latest scores for lookups failed (%s); lookups return "
                            "the previous ones until the users' next scores", len(batch), exc)
            except Exception:  # a bug here must never reach the stream
                self.failed += len(batch)
                log.exception("keeping %d latest scores for lookups failed", len(batch))
            else:
                self.written += written
                self.kept += len(batch) - written
