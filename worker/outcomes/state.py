"""Where pending outcomes wait: the interface, and an in-memory implementation for tests.

Two structures (:mod:`worker.outcomes.redis_state` lays them out in Redis):

- per user (by hash tag), a hash: score_id -> pending entry or done marker
  (:mod:`worker.outcomes.pending`); bounded per user, with the window's TTL;
- per input partition, a due index: members ``<score_id><tag>`` ordered by the end of their
  horizon, so the scores a watermark has passed are found without looking at every user.
  A member is only a pointer: the user's hash decides (a member whose entry is done or gone
  is stale and just removed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["DueQuery", "MemoryOutcomeState", "OutcomeState", "Reads", "Writes", "due_member",
           "split_member"]

SCORE_ID_CHARS = 32  # worker.scoring.records.score_id: 16 bytes of BLAKE2b, hex


def due_member(score_id: str, tag: str) -> str:
    if len(score_id) != SCORE_ID_CHARS:
        raise ValueError(f"score_id must be {SCORE_ID_CHARS} hex characters: {score_id!r}")
    return score_id + tag


def split_member(member: str) -> tuple[str, str]:
    """``(score_id, tag)`` of a due-index member."""
    return member[:SCORE_ID_CHARS], member[SCORE_ID_CHARS:]


@dataclass(frozen=True, slots=True)
class DueQuery:
    """Members of one partition's due index whose horizon ended before ``cutoff_ms``, at most
    ``limit`` of them, oldest first."""

    topic: str
    partition: int
    cutoff_ms: int
    limit: int


@dataclass(slots=True)
class Reads:
    """``entries``: every field of each user asked for (tag -> score_id -> raw value).
    ``due``: the due members found (topic, partition, member), and ``due_values`` their
    entries' values (tag -> score_id -> raw value, or ``None`` when the field is gone)."""

    entries: dict[str, dict[str, bytes]] = field(default_factory=dict)
    due: list[tuple[str, int, str]] = field(default_factory=list)
    due_values: dict[str, dict[str, bytes | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Writes:
    """One batch's changes, applied after its outcomes were delivered.

    ``add``: new pending entries (kept only where the field is absent: a redelivered score
    never replaces its done marker); ``done``: resolved entries, replaced by done markers;
    ``delete``: fields dropped (old done markers, entries over the per-user bound);
    ``due_add`` / ``due_remove``: due-index members per (topic, partition).
    """

    add: dict[str, dict[str, bytes]] = field(default_factory=dict)
    done: dict[str, dict[str, bytes]] = field(default_factory=dict)
    delete: dict[str, list[str]] = field(default_factory=dict)
    due_add: dict[tuple[str, int], list[tuple[int, str]]] = field(default_factory=dict)
    due_remove: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.add or self.done or self.delete or self.due_add or self.due_remove)


class OutcomeState(Protocol):
    """Failures raise :class:`~worker.errors.StoreError` (retriable)."""

    def tag(self, user_id: str) -> str:
        """The name the state gives a user (a Redis hash tag: the id escaped, or a pseudonym)."""
        ...

    def published_id(self, tag: str) -> str:
        """The user id an outcome record carries for ``tag``."""
        ...

    async def read(self, users: Sequence[str], due: Sequence[DueQuery],
                   fields: Mapping[str, Sequence[str]] | None = None) -> Reads:
        """Every entry of ``users`` (tags), the due members of each query and their entries,
        and the values of ``fields`` (tag -> score ids), the latter two in ``due_values``."""
        ...

    async def write(self, writes: Writes) -> dict[str, int]:
        """Apply ``writes``; return the number of fields each hash that gained an entry now
        holds (where the bound may have been crossed)."""
        ...


class MemoryOutcomeState:
    """:class:`OutcomeState` in a dict (unit tests; no TTL)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.due_index: dict[tuple[str, int], dict[str, int]] = {}

    def tag(self, user_id: str) -> str:
        return user_id

    def published_id(self, tag: str) -> str:
        return tag

    async def read(self, users: Sequence[str], due: Sequence[DueQuery],
                   fields: Mapping[str, Sequence[str]] | None = None) -> Reads:
        reads = Reads(entries={u: dict(self.hashes.get(u, {})) for u in users})
        for tag, sids in (fields or {}).items():
            for sid in sids:
                reads.due_values.setdefault(tag, {})[sid] = self.hashes.get(tag, {}).get(sid)
        for q in due:
            index = self.due_index.get((q.topic, q.partition), {})
            found = sorted((ms, m) for m, ms in index.items() if ms < q.cutoff_ms)[:q.limit]
            for _, member in found:
                reads.due.append((q.topic, q.partition, member))
                sid, tag = split_member(member)
                reads.due_values.setdefault(tag, {})[sid] = self.hashes.get(tag, {}).get(sid)
        return reads

    async def write(self, writes: Writes) -> dict[str, int]:
        for tag, fields in writes.add.items():
            h = self.hashes.setdefault(tag, {})
            for sid, value in fields.items():
                h.setdefault(sid, value)
        for tag, fields in writes.done.items():
            self.hashes.setdefault(tag, {}).update(fields)
        for tag, sids in writes.delete.items():
            h = self.hashes.setdefault(tag, {})
            for sid in sids:
                h.pop(sid, None)
        for key, members in writes.due_add.items():
            self.due_index.setdefault(key, {}).update((m, ms) for ms, m in members)
        for key, members in writes.due_remove.items():
            index = self.due_index.get(key, {})
            for m in members:
                index.pop(m, None)
        return {tag: len(self.hashes.get(tag, {})) for tag in writes.add}

