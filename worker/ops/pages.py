"""The worker's HTTP pages on ``INTENT_WEB_PORT``: ``/metrics``, ``/health`` and ``/ready``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import faust

from worker.errors import IntentError
from worker.ops.metrics import CONTENT_TYPE_LATEST, Metrics


class Serving(Protocol):
    name: str
    version: str


def add_pages(app: faust.App, *, metrics: Metrics, serving: Callable[[], Serving],
              ping_store: Callable[[], Awaitable[None]], store_timeout_s: float = 1.0,
              before_scrape: Callable[[], None] | None = None) -> None:
    """Add the pages to ``app``: ``serving()`` is the model serving now, ``ping_store()``
    raises an :class:`IntentError` when the window store does not answer, ``before_scrape()``
    brings gauges up to date that batches refresh (a quiet worker still reports its latest
    live figures)."""

    @app.page("/metrics")
    async def prometheus(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Prometheus text exposition of :class:`worker.ops.metrics.Metrics`."""
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
        scorer = serving()
        body = {"model": {"name": scorer.name, "version": scorer.version}}
        try:
            await asyncio.wait_for(ping_store(), timeout=store_timeout_s)
        except (IntentError, TimeoutError) as exc:
            return web.json({"status": "not ready", "redis": str(exc) or "timeout", **body},
                            status=503)
        return web.json({"status": "ready", **body})
