"""Start-up of the worker process: check services, load the model, run Faust.

Everything slow or fallible happens here, at the entry point, before the Faust
worker starts, so a bad setting or an unreachable service stops start-up with
one clear line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from worker.errors import IntentError, ServiceUnavailable
from worker.settings import Settings

log = logging.getLogger(__name__)

#: On SIGTERM, wait at most this long for the batch in flight before stopping anyway (it is then
#: redelivered after the restart). Below the 30 s that Kubernetes and systemd grant by default.
DRAIN_TIMEOUT_S = 20.0


def make_scorer(settings: Settings):
    """The configured scorer: the model at INTENT_MODEL_PATH (or the shipped default), or no-op."""
    from worker.scoring.scorer import NoopScorer

    if settings.scorer == "noop":
        return NoopScorer()
    from worker.model import default_model_path, load_model

    path = settings.model_path or default_model_path()
    model = load_model(path, device=settings.device)
    log.info("loaded model %s %s from %s on %s", model.name, model.version, path, model.device)
    return model


async def wait_for_redis(store, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            await store.ping()
            return
        except IntentError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:  # give up only once the whole timeout has passed
                raise ServiceUnavailable(f"Redis not reachable after {timeout_s:.0f}s: {exc}; "
                                         "check INTENT_REDIS_URL") from None
            wait = min(delay, remaining)  # the last try lands on the deadline
            log.warning("Redis not reachable yet (%s); retrying in %.1fs", exc, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 5.0)


async def drain_in_flight(consumer, flow_control, *, timeout_s: float = DRAIN_TIMEOUT_S,
                          poll_s: float = 0.05) -> bool:
    """Stop taking messages and wait until every message taken so far is acknowledged.

    Faust's own shutdown cancels the agent in the middle of a batch: the batch is then
    neither published nor committed (it is redelivered after a restart). This lets the
    batch in flight (and events already in its take buffer) finish, be published and
    acknowledged first; Faust's shutdown then flushes the producer and commits them.
    Fetching stops and queued messages that no batch has taken yet are skipped, never
    acknowledged, so the group redelivers them. Returns False on timeout.
    """
    consumer.pause_partitions(consumer.assignment())
    flow_control.suspend()
    deadline = time.monotonic() + timeout_s
    while consumer.unacked:
        if time.monotonic() >= deadline:
            log.warning("%d messages still unacknowledged after %.0fs; stopping without them "
                        "(they are redelivered after a restart)", len(consumer.unacked), timeout_s)
            return False
        await asyncio.sleep(poll_s)
    return True


def graceful_worker_class():
    """A ``faust.Worker`` whose SIGTERM first lets the batch in flight finish.

    See :func:`drain_in_flight`. A second SIGTERM stops at once (Faust's own handling).
    """
    import faust

    class Worker(faust.Worker):  # the same name as Faust's: logs keep reading "[^Worker]: Ready"
        _drain: asyncio.Future | None = None

        def _on_sigterm(self) -> None:
            if self._drain is not None:  # a second SIGTERM: stop now
                super()._on_sigterm()
                return
            log.info("SIGTERM: finishing the batch in flight, then stopping")
            self._drain = asyncio.ensure_future(self._drain_then_stop())

        async def _drain_then_stop(self) -> None:
            try:
                app = self.app
                if app._consumer is not None:  # noqa: SLF001 - not started yet: nothing in flight
                    if await drain_in_flight(app.consumer, app.flow_control):
                        log.info("batch in flight finished; stopping")
            finally:
                super()._on_sigterm()

    return Worker


def run_worker(settings: Settings) -> None:
    import faust

    from worker.app import create_app, topic_names
    from worker.kafka.admin import ensure_topics
    from worker.scoring.pipeline import Pipeline
    from worker.windows import RedisWindowStore

    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    scorer = make_scorer(settings)
    store = RedisWindowStore.from_settings(settings)
    loop.run_until_complete(wait_for_redis(store, settings.startup_timeout_s))
    loop.run_until_complete(store.start())
    loop.run_until_complete(ensure_topics(settings.bootstrap_list, topic_names(settings),
                                          partitions=settings.topic_partitions,
                                          timeout_s=settings.startup_timeout_s))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-model")
    pipeline = Pipeline(settings, store=store, scorer=scorer, executor=executor)
    reloader = None
    if settings.scorer == "model":
        from worker.model import default_model_path, load_model
        from worker.model.reload import ModelReloader

        def swap(model: object) -> None:
            pipeline.scorer = model  # read once per batch: lands between batches

        reloader = ModelReloader(settings.model_path or default_model_path(),
                                 load=lambda p: load_model(p, device=settings.device),
                                 on_swap=swap, current_version=scorer.version)
    app = create_app(settings, pipeline=pipeline, reloader=reloader)
    worker = graceful_worker_class()(app, loop=loop, loglevel=settings.log_level, quiet=True)

    @app.on_before_shutdown.connect
    async def _close(app: faust.App, **_: object) -> None:  # after streams drained
        await store.stop()
        executor.shutdown(wait=False, cancel_futures=True)
        if reloader is not None:
            reloader.close()

    worker.execute_from_commandline()
