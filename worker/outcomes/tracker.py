"""OutcomeTracker: which published scores have their outcome now, and what to remember.

Per batch (:meth:`OutcomeTracker.read`, then :meth:`resolve`, then, once the batch's
outcomes are delivered, :meth:`confirm`):

- a **positive** is a pending score of a user with a purchase in this batch inside its horizon
  (event time in ``(ts, ts + horizon]``): read with the user's pending hash;
- a **negative** is a pending score whose horizon ended before its partition's cutoff (the
  watermark less the allowed lateness, :mod:`worker.outcomes.watermark`), found in the
  partition's due index, at most ``sweep_users`` per partition and batch (the rest next batch);
- each new score of an example window (its newest event not a purchase) becomes pending.

The label is training's (:func:`worker.dataset.examples.bought_within`, and
:func:`~worker.dataset.examples.is_example` for which windows have one). A resolved score
leaves a done marker, so a redelivered batch (same score ids) is never resolved twice; markers
older than ``keep_done_ms`` of the user's event time are cleaned up when the user's hash is
read. A user holds at most ``max_pending`` waiting scores: beyond that the oldest are dropped
(counted in :attr:`dropped`), checked after each write.

Changes are applied only in :meth:`confirm`, after delivery; until then a resolution stays
visible to later :meth:`resolve` calls of this process (a batch processed message by message
resolves each part before any is confirmed).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.dataset.examples import bought_within
from worker.outcomes.pending import Pending, done_marker, marker_ts, pack, unpack
from worker.outcomes.state import DueQuery, OutcomeState, Reads, Writes, due_member, split_member
from worker.outcomes.watermark import Watermarks

__all__ = ["Outcome", "OutcomeTracker", "Resolution"]

log = logging.getLogger(__name__)

Partition = tuple[str, int]
SAMPLE_SPACE = 10_000
# resolutions awaiting delivery, beyond the parts of one batch processed message by message
# (BatchRunner.isolate) and the two batches of the overlap: more means some were abandoned
UNCONFIRMED_SLACK = 8


@dataclass(frozen=True, slots=True)
class Outcome:
    pending: Pending
    label: int
    resolved_by: str  # "purchase" | "watermark"
    resolved_ts: int


@dataclass(slots=True, eq=False)  # identity: the tracker removes this very one
class Resolution:
    """A batch's outcomes and the state changes to apply once they are delivered."""

    outcomes: list[Outcome] = field(default_factory=list)
    writes: Writes = field(default_factory=Writes)
    stale: int = 0
    dropped: int = 0


class OutcomeTracker:
    def __init__(self, state: OutcomeState, *, lateness_ms: int, max_pending: int,
                 sweep_users: int, keep_done_ms: int = 3_600_000, sample: float = 1.0,
                 batch_max: int = 256) -> None:
        if not 0 < sample <= 1:
            raise ValueError(f"sample must be in (0, 1], got {sample}")
        self.state = state
        self._sample_below = int(sample * SAMPLE_SPACE)
        self.watermarks = Watermarks(lateness_ms=lateness_ms)
        self.max_pending = max_pending
        self.sweep_users = sweep_users
        self.keep_done_ms = keep_done_ms
        self._unconfirmed: list[Resolution] = []
        self._max_unconfirmed = batch_max + UNCONFIRMED_SLACK
        self._trim: set[str] = set()  # users whose hash grew past max_pending
        self.dropped = 0
        self.stale = 0
        self.read_s = 0.0  # time in state reads and writes, so far (benchmarks)
        self.write_s = 0.0

    def tracks(self, tag: str) -> bool:
        """Whether this user's scores get outcomes: all of them, or a stable sample of users
        (a hash of the tag, so a user is in or out for good, in every worker)."""
        return (self._sample_below >= SAMPLE_SPACE
                or zlib.crc32(tag.encode()) % SAMPLE_SPACE < self._sample_below)

    async def read(self, purchasers: Sequence[str], cutoffs: Mapping[Partition, int],
                   past_due: Mapping[str, Sequence[str]] | None = None) -> Reads:
        """The state :meth:`resolve` needs: the pending hashes of ``purchasers`` (tags) and of
        users over the bound, the due scores of each partition, and what is stored for the
        batch's new scores that are ``past_due`` already (tag -> score ids): a redelivered one
        may have had its outcome."""
        users = list(dict.fromkeys([*purchasers, *self._trim]))
        self._trim.clear()  # read now, trimmed by this batch; a write that grows one again adds it
        due = [DueQuery(t, p, cut, self.sweep_users) for (t, p), cut in cutoffs.items()]
        t0 = time.perf_counter()
        try:
            return await self.state.read(users, due, past_due)
        finally:
            self.read_s += time.perf_counter() - t0

    def resolve(self, reads: Reads, *, purchases: Mapping[str, Sequence[int]],
                new: Sequence[tuple[Partition, Pending]],
                cutoffs: Mapping[Partition, int]) -> Resolution:
        """Outcomes of this batch. ``purchases``: tag -> purchase times (ms) in this batch;
        ``new``: the batch's new pending scores with their source partition."""
        res = Resolution()
        w = res.writes
        done_here: dict[str, set[str]] = {}
        added_here: dict[str, dict[str, Pending]] = {}
        earlier_done: set[str] = set()  # resolved by a batch not yet written (score ids)
        for earlier in self._unconfirmed:  # resolved or added, not yet written
            for o in earlier.outcomes:
                done_here.setdefault(o.pending.tag, set()).add(o.pending.score_id)
                earlier_done.add(o.pending.score_id)
            for tag, fields in earlier.writes.add.items():
                for sid, raw in fields.items():
                    p = unpack(sid, tag, raw)
                    if p is not None:
                        added_here.setdefault(tag, {})[sid] = p

        def finish(p: Pending, label: int, by: str, ts: int) -> None:
            done_here.setdefault(p.tag, set()).add(p.score_id)
            res.outcomes.append(Outcome(p, label, by, ts))
            w.done.setdefault(p.tag, {})[p.score_id] = done_marker(p.ts)

        # positives: purchases in this batch inside a pending score's horizon
        for tag, fields in reads.entries.items():
            waiting, done = self._entries(tag, fields, added_here.get(tag, {}))
            times = sorted(purchases.get(tag, ()))
            kept = []
            for p in waiting:
                if p.score_id in done_here.get(tag, ()):
                    continue
                if times and bought_within(times, p.ts, p.horizon_ms):
                    finish(p, 1, "purchase", _first_after(times, p.ts))
                else:
                    kept.append(p)
            self._clean(tag, kept, done, res)
        # negatives: horizons the partition's watermark passed
        for topic, partition, member in reads.due:
            sid, tag = split_member(member)
            w.due_remove.setdefault((topic, partition), []).append(member)
            raw = reads.due_values.get(tag, {}).get(sid)
            p = unpack(sid, tag, raw) if raw is not None else None
            if sid in earlier_done:  # its batch removes the pointer once written; if that
                w.due_remove[(topic, partition)].pop()  # batch is abandoned, it is still due
                continue
            if p is None or sid in done_here.get(tag, ()):
                res.stale += 1  # resolved already, dropped or expired: just a pointer left
                continue
            cut = cutoffs.get((topic, partition))
            if cut is None or p.due_ms >= cut:  # not due after all (a cutoff moved back)
                w.due_remove[(topic, partition)].pop()
                continue
            dropping = w.delete.get(tag)
            if dropping and sid in dropping:  # trimmed above as over the bound: resolved now
                dropping.remove(sid)
                res.dropped -= 1
            finish(p, 0, "watermark", cut + self.watermarks.lateness_ms)
        # new scores wait for their outcome, unless the watermark has passed their horizon
        # already (a replay's backlog, or the batch that moves the watermark): no purchase of
        # the user is still to come within it, and none is later in this batch (the score's
        # event is the user's newest here)
        for tp, p in new:
            if p.score_id in done_here.get(p.tag, ()):
                continue  # a redelivered batch: this score has its outcome
            cut = cutoffs.get(tp)
            if cut is not None and p.due_ms < cut:
                stored = reads.due_values.get(p.tag, {}).get(p.score_id)
                if stored is not None and unpack(p.score_id, p.tag, stored) is None:
                    continue  # resolved before this redelivery
                finish(p, 0, "watermark", cut + self.watermarks.lateness_ms)
                continue
            w.add.setdefault(p.tag, {})[p.score_id] = pack(p)
            w.due_add.setdefault(tp, []).append((p.due_ms, due_member(p.score_id, p.tag)))
        self._unconfirmed.append(res)
        if len(self._unconfirmed) > self._max_unconfirmed:
            log.warning("%d resolutions of outcomes were never confirmed; forgetting the oldest",
                        len(self._unconfirmed))
            del self._unconfirmed[0]
        return res

    async def confirm(self, res: Resolution) -> None:
        """Apply ``res``'s changes (after its outcomes were delivered)."""
        t0 = time.perf_counter()
        try:
            sizes = await self.state.write(res.writes)
        finally:
            self.write_s += time.perf_counter() - t0
        for tag in res.writes.done:
            self._trim.discard(tag)
        for tag, size in sizes.items():
            if size > self.max_pending:
                self._trim.add(tag)  # read and trimmed with the next batch
        self.forget(res)
        self.stale += res.stale  # counted once written: retried or isolated batches count once
        self.dropped += res.dropped

    def forget(self, res: Resolution) -> None:
        """Stop showing ``res`` to later batches (confirmed, or abandoned)."""
        with contextlib.suppress(ValueError):
            self._unconfirmed.remove(res)

    def _entries(self, tag: str, fields: Mapping[str, bytes],
                 added: Mapping[str, Pending]) -> tuple[list[Pending], dict[str, int]]:
        """A user's waiting scores (oldest first) and done markers (score_id -> ts)."""
        waiting: dict[str, Pending] = dict(added)
        done: dict[str, int] = {}
        for sid, raw in fields.items():
            p = unpack(sid, tag, raw)
            if p is not None:
                waiting[sid] = p
            else:
                done[sid] = marker_ts(raw) or 0
        return sorted(waiting.values(), key=lambda p: (p.ts, p.score_id)), done

    def _clean(self, tag: str, waiting: list[Pending], done: Mapping[str, int],
               res: Resolution) -> None:
        """Drop old done markers and the oldest waiting scores over the bound."""
        newest = max([p.ts for p in waiting] + list(done.values()), default=0)
        old = [sid for sid, ts in done.items() if ts < newest - self.keep_done_ms]
        over = waiting[:max(0, len(waiting) - self.max_pending)]
        res.dropped += len(over)
        if old or over:
            res.writes.delete.setdefault(tag, []).extend([*old, *(p.score_id for p in over)])


def _first_after(times: Sequence[int], ts: int) -> int:
    """The first of ``times`` (ascending) after ``ts``; one exists when ``bought_within``."""
    return times[bisect.bisect_right(times, ts)]
