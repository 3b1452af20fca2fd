"""The worker's HTTP pages on ``INTENT_WEB_PORT``: ``/metrics``, ``/health`` and ``/ready``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import faust

from worker.errors import IntentError
from worker.ops.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = ["Readiness", "add_pages"]


class Serving(Protocol):
    name: str
    version: str


class Readiness:
    """The readiness check: a model is loaded (``serving()`` returns one) and the window store
    answers ``ping_store()`` within ``timeout_s`` (an :class:`IntentError` or no answer in time:
    not ready). Every check sets ``intent_ready`` (1 or 0). A store that hangs holds a check
    for ``timeout_s`` at most, so neither ``/ready`` nor a scrape waits on it longer."""

    def __init__(self, metrics: Metrics, *, serving: Callable[[], Serving | None],
                 ping_store: Callable[[], Awaitable[None]], timeout_s: float = 1.0) -> None:
        self._metrics = metrics
        self._serving = serving
        self._ping_store = ping_store
        self._timeout_s = timeout_s

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """Whether the worker is ready, and the body of ``/ready`` that says so."""
        scorer = self._serving()
        if scorer is None:
            self._metrics.ready.set(0)
            return False, {"status": "not ready", "model": None}
        body: dict[str, Any] = {"model": {"name": scorer.name, "version": scorer.version}}
        try:
            await asyncio.wait_for(self._ping_store(), timeout=self._timeout_s)
        except (IntentError, TimeoutError) as exc:
            self._metrics.ready.set(0)
            return False, {"status": "not ready", "redis": str(exc) or "timeout", **body}
        self._metrics.ready.set(1)
        return True, {"status": "ready", **body}


def add_pages(app: faust.App, *, metrics: Metrics, serving: Callable[[], Serving | None],
              ping_store: Callable[[], Awaitable[None]], store_timeout_s: float = 1.0,
              before_scrape: Callable[[], None] | None = None) -> None:
    """Add the pages to ``app``: ``serving()`` is the model serving now, ``ping_store()``
    raises an :class:`IntentError` when the window store does not answer, ``before_scrape()``
    brings gauges up to date that batches refresh (a quiet worker still reports its latest
    live figures). Each scrape runs the readiness check first (:class:`Readiness`), so
    ``intent_ready`` is as fresh as the scrape."""
    readiness = Readiness(metrics, serving=serving, ping_store=ping_store,
                          timeout_s=store_timeout_s)

    @app.page("/metrics")
    async def prometheus(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Prometheus text exposition of :class:`worker.ops.metrics.Metrics`."""
        await readiness.check()
        if before_scrape is not None:
            before_scrape()
        # aiohttp refuses a charset inside content_type: send the header as it is
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Liveness: the process and its event loop answer."""
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Readiness: a model is loaded and the window store answers in time."""
        ok, body = await readiness.check()
        return web.json(body, status=200 if ok else 503)
