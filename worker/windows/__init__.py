"""Per-user rolling windows of events: the interface, a Redis store and an in-memory one."""

from worker.windows.base import WindowStore
from worker.windows.keys import KeyBuilder, key_builder
from worker.windows.memory import MemoryWindowStore
from worker.windows.redis_store import RedisWindowStore

__all__ = ["KeyBuilder", "MemoryWindowStore", "RedisWindowStore", "WindowStore", "key_builder"]
