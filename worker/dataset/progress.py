"""Progress bars: tqdm when it is installed, else a log line every few seconds."""

from __future__ import annotations

import logging
import time
from types import TracebackType

__all__ = ["bar"]

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0


class _LogBar:
    def __init__(self, total: int, desc: str, unit: str, enabled: bool) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.n = 0
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= LOG_EVERY_S or self.n >= self.total):
            self._last = now
            rate = self.n / max(now - self._start, 1e-9)
            log.info("%s: %d/%d %s (%.1f/s)", self.desc, self.n, self.total, self.unit, rate)

    def set_postfix_str(self, text: str) -> None:
        if self.enabled:
            log.info("%s: %s", self.desc, text)

    def __enter__(self) -> _LogBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def bar(*, total: int, desc: str, unit: str = "it", enabled: bool = True):  # noqa: ANN201
    """A context manager with ``update(n)`` and ``set_postfix_str(text)``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _LogBar(total, desc, unit, enabled)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)
