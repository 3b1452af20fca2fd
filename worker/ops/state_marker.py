"""Noticing that Redis lost the worker's state: restarted without persistence, or flushed.

Windows, alert cooldowns, price samples, latest scores and waiting outcomes all live in Redis.
A Redis that comes back empty answers every command as before, so nothing fails: the worker
just starts from empty state. :class:`StateMarker` makes that visible. A marker key
(``{prefix}:state:epoch``: no TTL, no user data) holds a random epoch id, written when the
key is missing (one atomic script: read, or create if absent). Each worker remembers the epoch
it saw; a later look that finds another epoch, or no key (which it then re-creates), means the
state it wrote before is gone. Workers sharing a Redis each notice for themselves: the first to
look re-creates the marker with a new epoch, and the others find that epoch different from
theirs. A restart that keeps the data (AOF or an RDB snapshot holding the marker) keeps the
epoch, so it is not reported.

What it does not see: Redis Cluster keeps the marker on one node (the slot of its key), so a
cluster detects the loss of that node's data, or of the whole cluster's, but not a different
primary coming back empty on its own. Eviction under an ``allkeys-*`` ``maxmemory-policy`` can
remove the marker like any key and is then reported as a loss (the ``volatile-*`` policies
never touch it: it has no TTL). Deleting the key by hand is reported too.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from worker.errors import StoreError
from worker.redis_client import describe_error

if TYPE_CHECKING:
    from worker.redis_client import RedisClient
    from worker.windows.redis_store import RedisWindowStore

__all__ = ["MARKER_SCRIPT", "StateMarker"]

log = logging.getLogger(__name__)

# KEYS[1] the marker, ARGV[1] a new epoch. Returns {epoch, 1} when the marker was missing and is
# now set to ARGV[1], else {the epoch it holds, 0}. One script: a flush between a read and a
# write cannot split them.
MARKER_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if epoch then
  return {epoch, 0}
end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
"""


def new_epoch() -> str:
    return secrets.token_hex(8)


class StateMarker:
    """The marker of one key prefix in one Redis, as this worker saw it.

    :meth:`check` looks at the marker (creating it when missing) and says whether the state was
    lost since the previous look; the first look only remembers the epoch (a worker cannot tell
    a new Redis from one that restarted before it started). ``losses`` counts the losses seen.
    """

    def __init__(self, client: RedisClient, key: str, *,
                 epoch_factory: Callable[[], str] = new_epoch) -> None:
        self._client = client
        self.key = key
        self._new_epoch = epoch_factory
        self._epoch: str | None = None
        self.losses = 0

    @classmethod
    def for_store(cls, store: RedisWindowStore) -> StateMarker:
        """The marker beside ``store``'s windows: its client, ``{prefix}:state:epoch``."""
        return cls(store.client, store.keys.shared_key("state", "epoch"))

    @property
    def epoch(self) -> str | None:
        """The epoch seen at the last look (``None`` before the first)."""
        return self._epoch

    async def check(self) -> bool:
        """Look at the marker; True when Redis lost the state since the last look (the marker
        was gone, or holds an epoch this worker did not see before), which is logged once as a
        WARNING. A Redis that does not answer raises :class:`StoreError` and changes nothing."""
        try:
            reply = await self._client.eval(MARKER_SCRIPT, 1, self.key, self._new_epoch())
        except RedisError as exc:
            raise StoreError(f"redis state marker not read: {describe_error(exc)}") from exc
        value, created = reply
        epoch = value.decode() if isinstance(value, bytes) else str(value)
        seen, self._epoch = self._epoch, epoch
        if seen is None:
            if created:  # INFO: a first deployment creates it too, and that is no trouble
                log.info("Redis state marker %s created (epoch %s): this Redis is new to the "
                         "worker, or lost its state before this worker started", self.key, epoch)
            else:
                log.info("Redis state marker %s found (epoch %s)", self.key, epoch)
            return False
        if epoch == seen:
            return False
        self.losses += 1
        by = "re-created here" if created else "re-created by another worker"
        log.warning("Redis lost the worker's state (marker %s is gone, %s): windows, alert "
                    "cooldowns and outcome state start empty; scoring goes on with windows "
                    "rebuilt from new events", self.key, by)
        return True
