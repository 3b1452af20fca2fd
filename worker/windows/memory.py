"""An in-process window store with the same semantics as the Redis one (tests, demos)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from worker.windows.codec import check_limits, decode_window, encode_event, join_payloads

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["MemoryWindowStore"]


class MemoryWindowStore:
    """:class:`~worker.windows.base.WindowStore` in a dict, for unit tests of other modules.

    Events are kept serialised (orjson), exactly as in Redis, so a window comes
    back as fresh dicts and anything that would not survive Redis fails here too.
    ``ttl_s`` is accepted for symmetry but nothing expires: there is no clock
    here (expiry is Redis' job; tests of retention belong with the Redis store).
    Not safe for use from several threads; fine for many tasks on one loop
    (``append`` never awaits in the middle).
    """

    def __init__(self, *, max_events: int, span_ms: int, ttl_s: int | None = None) -> None:
        check_limits(max_events=max_events, span_ms=span_ms, ttl_s=ttl_s)
        self.max_events = max_events
        self.span_ms = span_ms
        self.ttl_s = ttl_s
        # user_id -> event_id -> (ts, payload)
        self._users: dict[str, dict[str, tuple[int, bytes]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryWindowStore:
        return cls(
            max_events=settings.window_max_events,
            span_ms=settings.window_seconds * 1000,
            ttl_s=settings.window_ttl_seconds,
        )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def __aenter__(self) -> MemoryWindowStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def ping(self) -> None:
        return None

    async def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)

    async def append(self, batch: Mapping[str, Sequence[dict]]) -> dict[str, list[dict]]:
        return self.append_sync(batch)

    def append_sync(self, batch: Mapping[str, Sequence[dict]]) -> dict[str, list[dict]]:
        """:meth:`append` without an event loop (offline replays: training, evaluation)."""
        # Encode everything first so a bad event changes nothing (as in Redis, where
        # encoding happens before the round trip).
        encoded = {user: [encode_event(e, user) for e in events] for user, events in batch.items()}
        out: dict[str, list[dict]] = {}
        for user, events in encoded.items():
            stored = self._users.get(user, {})
            for ts, event_id, payload in events:
                if event_id not in stored:  # first write wins, later ones are redeliveries
                    stored[event_id] = (ts, payload)
            ordered = sorted(stored.items(), key=lambda kv: (kv[1][0], kv[0]))
            if ordered:
                cutoff = ordered[-1][1][0] - self.span_ms
                ordered = [kv for kv in ordered if kv[1][0] >= cutoff][-self.max_events :]
            if ordered:
                self._users[user] = dict(ordered)
            else:
                self._users.pop(user, None)
            out[user] = decode_window(join_payloads(payload for _, (_, payload) in ordered), user)
        return out
