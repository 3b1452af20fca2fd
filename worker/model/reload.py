"""Model updates without downtime.

:class:`ModelReloader` watches the model directory (``INTENT_MODEL_PATH``; a symlink
switched atomically to a new version directory is the recommended deployment) and, on a
change or on request (SIGHUP), loads the new model in a background thread and hands it
to ``on_swap`` (:meth:`ModelReloader.watch` polls and listens for the signal). The
pipeline reads its scorer once per batch, so the swap lands between batches. A directory
that fails to load is refused with a clear error and the old model keeps serving; the same
broken fingerprint is not retried until it changes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from worker.errors import IntentError
from worker.model.modeldir import CONFIG_FILE

log = logging.getLogger(__name__)

Fingerprint = tuple[object, ...]


def fingerprint(path: Path) -> Fingerprint:
    """What identifies a deployed model directory: where it resolves to and its files' stats."""
    real = Path(os.path.realpath(path))
    stats: list[object] = [str(real)]
    for name in (CONFIG_FILE, "head.safetensors", "pooled.safetensors"):
        try:
            st = (real / name).stat()
            stats.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((name, None))
    return tuple(stats)


class ModelReloader:
    def __init__(self, path: Path, *, load: Callable[[Path], object],
                 on_swap: Callable[[object], None], current_version: str) -> None:
        self._path = path
        self._load = load
        self._on_swap = on_swap
        self._seen = fingerprint(path)
        self._version = current_version
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-model-load")
        self.last_error: str | None = None

    async def check(self, *, force: bool = False) -> bool:
        """Reload if the directory changed (or ``force``); True when a new model was swapped in."""
        async with self._lock:
            fp = fingerprint(self._path)
            if fp == self._seen and not force:
                return False
            self._seen = fp
            loop = asyncio.get_running_loop()
            try:
                model = await loop.run_in_executor(self._executor, self._load, self._path)
            except IntentError as exc:
                self.last_error = str(exc)
                log.error("model reload refused, version %s keeps serving: %s", self._version, exc)
                return False
            except Exception as exc:  # noqa: BLE001 - any load failure must leave the old model serving
                self.last_error = repr(exc)
                log.exception("model reload failed, version %s keeps serving", self._version)
                return False
            self.last_error = None
            old, self._version = self._version, getattr(model, "version", "?")
            self._on_swap(model)
            log.info("model swapped: %s -> %s (%s)", old, self._version, self._path)
            return True

    async def watch(self, poll_s: float) -> None:
        """Check on SIGHUP (forced: reload even if unchanged) and every ``poll_s`` seconds
        (``0``: on SIGHUP only), until cancelled."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP,
                                lambda: asyncio.ensure_future(self.check(force=True)))
        try:
            while True:
                if poll_s > 0:
                    await asyncio.sleep(poll_s)
                    await self.check()
                else:
                    await loop.create_future()  # never done: SIGHUP only
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
