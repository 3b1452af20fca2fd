"""Start-up of the worker process: check services, load the model, run Faust.

Everything slow or fallible happens here, at the entry point, before the Faust
worker starts, so a bad setting or an unreachable service stops start-up with
one clear line.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from worker.backoff import retry
from worker.errors import ConfigError, IntentError, ServiceUnavailable
from worker.settings import Settings

log = logging.getLogger(__name__)


def make_scorer(settings: Settings, *, vector_store=None, executor=None):
    """The configured scorer: the model at INTENT_MODEL_PATH (or the shipped default), or no-op.
    A pooled model shares its event vectors through ``vector_store`` and encodes in
    ``executor`` (the worker's one model thread)."""
    from worker.scoring.scorer import NoopScorer

    if settings.scorer == "noop":
        return NoopScorer()
    from worker.model import default_model_path

    path = settings.model_path or default_model_path()
    model = load_configured(settings, path, vector_store=vector_store, executor=executor,
                            threads=settings.model_threads())
    log.info("model warmed up in %.2fs", model.warm_up())
    log.info("loaded model %s %s (%s) from %s on %s", model.name, model.version,
             model.config.kind, path, model.device)
    return model


def make_shadow(settings: Settings, champion, *, vector_store=None, executor=None):
    """The shadow challenger at INTENT_SHADOW_MODEL_PATH, warmed up, or ``None``."""
    if settings.shadow_model_path is None:
        return None
    model = load_configured(settings, settings.shadow_model_path, vector_store=vector_store,
                            executor=executor, threads=settings.model_threads())
    log.info("shadow model warmed up in %.2fs", model.warm_up())
    log.info("loaded shadow model %s %s (%s) from %s: scored beside %s %s, published only as "
             "outcomes", model.name, model.version, model.config.kind,
             settings.shadow_model_path, getattr(champion, "name", "?"),
             getattr(champion, "version", "?"))
    from worker.model.config import trained_horizon_s

    mine, theirs = trained_horizon_s(model), trained_horizon_s(champion)
    if None not in (mine, theirs) and mine != theirs:
        log.warning("the shadow model was trained for a %ss horizon, the champion for %ss: "
                    "the shadow is judged on the champion's", mine, theirs)
    return model


def _reference(model):
    return getattr(getattr(model, "config", None), "score_reference", None)


def load_configured(settings: Settings, path, *, vector_store=None, executor=None,
                    threads: int | None = None):
    """The model directory at ``path`` loaded with the worker's settings (either kind)."""
    from worker.model import load_model

    return load_model(path, device=settings.device, cache_size=settings.embed_cache_size,
                      threads=threads, vector_store=vector_store,
                      vector_cache_size=settings.vector_cache_size,
                      vector_ttl_s=settings.vector_ttl_seconds, executor=executor)


def _warm(model):
    """A new model, warmed up in the loader's thread before it is swapped in."""
    log.info("new model warmed up in %.2fs", model.warm_up())
    return model


async def wait_for_redis(store, timeout_s: float, *, settings: Settings | None = None) -> None:
    """Ping the store until it answers, retrying with backoff (0.2 s doubling to 5 s) for the
    whole ``timeout_s``; then :class:`ServiceUnavailable`. A server certificate that fails TLS
    verification is a setting or a certificate to fix, not an outage: :class:`ConfigError` at
    once. Only the final error says what to fix when ``settings`` can be the cause; the retry
    lines give the error alone (a Redis that is restarting resets connections too, and that is
    no setting to fix)."""
    from worker.redis_client import certificate_rejected, explain

    def retrying(exc: BaseException, pause_s: float) -> None:
        log.warning("Redis not reachable yet (%s); retrying in %.1fs", str(exc).rstrip("."),
                    pause_s)

    try:
        await retry(store.ping,
                    when=lambda exc: isinstance(exc, IntentError) and not certificate_rejected(exc),
                    first_s=0.2, max_s=5.0, timeout_s=timeout_s, on_retry=retrying)
    except IntentError as exc:
        if certificate_rejected(exc):
            raise ConfigError(f"Redis not usable: {explain(exc, settings)}") from exc
        why = explain(exc, settings, otherwise="check INTENT_REDIS_URL")
        raise ServiceUnavailable(f"Redis not reachable after {timeout_s:.0f}s: {why}") from exc


def tune_gc(settings: Settings) -> None:
    """Raise the generation-0 collection threshold (``INTENT_GC_THRESHOLD``). The worker makes
    several short-lived dicts per event, so at Python's default (a collection every 700 net
    allocations) the collector runs hundreds of times per second and its full passes walk the
    window caches. Almost everything is still freed at once by reference counting."""
    if settings.gc_threshold:
        gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])


def run_worker(settings: Settings) -> None:
    import faust

    from worker.anomaly import KINDS
    from worker.app import create_app, topic_names
    from worker.kafka.admin import ensure_topics
    from worker.kafka.security import aiokafka_options
    from worker.ops.logs import logging_config, setup_logging
    from worker.ops.metrics import Metrics
    from worker.ops.state_marker import StateMarker
    from worker.outcomes.live import LiveQuality
    from worker.scoring.pipeline import Pipeline
    from worker.vectors import RedisVectorStore
    from worker.windows import RedisWindowStore

    setup_logging(settings)
    tune_gc(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intent-model")
    vectors = RedisVectorStore.from_settings(settings)  # used by pooled models only
    scorer = make_scorer(settings, vector_store=vectors, executor=executor)
    store = RedisWindowStore.from_settings(settings)
    loop.run_until_complete(wait_for_redis(store, settings.startup_timeout_s, settings=settings))
    loop.run_until_complete(store.start())
    state_marker = StateMarker.for_store(store)
    loop.run_until_complete(state_marker.check())  # remembers the epoch later looks compare
    loop.run_until_complete(vectors.start())
    loop.run_until_complete(ensure_topics(settings.bootstrap_list, topic_names(settings),
                                          partitions=settings.topic_partitions,
                                          timeout_s=settings.startup_timeout_s,
                                          **aiokafka_options(settings)))
    if settings.anomaly_enabled and settings.anomaly_cooldown_s > settings.window_ttl_seconds:
        log.warning("INTENT_ANOMALY_COOLDOWN_S (%gs) is longer than INTENT_WINDOW_TTL_SECONDS "
                    "(%ds): the cooldown state expires with the user's keys, so the cooldown is "
                    "at most the TTL for a user who goes quiet", settings.anomaly_cooldown_s,
                    settings.window_ttl_seconds)
    tracking = settings.outcomes_enabled and settings.processing_guarantee == "at_least_once"
    if settings.outcomes_enabled and not tracking:
        log.warning("outcomes are not tracked with INTENT_PROCESSING_GUARANTEE=exactly_once: "
                    "their state would be written before the transaction commits; set "
                    "INTENT_OUTCOMES_ENABLED=off to silence this")
    if settings.shadow_model_path is not None and not tracking:
        log.warning("INTENT_SHADOW_MODEL_PATH is set but outcomes are not tracked: the shadow "
                    "model is not loaded (its scores only ever go into the outcomes)")
    shadow = (make_shadow(settings, scorer, vector_store=vectors, executor=executor)
              if settings.scorer == "model" and tracking else None)
    live = LiveQuality(window=settings.live_window)
    for model in (scorer, shadow):
        if model is not None:
            live.set_reference(model.name, model.version, _reference(model))
    pipeline = Pipeline.from_settings(settings, store=store, scorer=scorer, executor=executor,
                                      shadow=shadow, live=live)
    if pipeline.outcomes is not None:
        loop.run_until_complete(pipeline.outcomes.state.start())
    metrics = Metrics(alert_kinds=KINDS)
    reloader = None
    if settings.scorer == "model":
        from worker.model import default_model_path
        from worker.model.offline import offline_figures
        from worker.model.reload import ModelReloader

        model_path = settings.model_path or default_model_path()
        metrics.set_offline(scorer.name, scorer.version, offline_figures(model_path))
        # the reloader hands each model it loads to swap() at once, one load at a time: the
        # last load is the model being swapped in
        loaded: list[tuple[object, dict[str, float]]] = []

        def load(path: Path) -> object:
            """The new model and its offline figures, both from where ``path`` points now."""
            real = Path(os.path.realpath(path))
            model = _warm(load_configured(settings, real, vector_store=vectors,
                                          executor=executor))
            loaded[:] = [(model, offline_figures(real))]
            return model

        def swap(model: object) -> None:
            live.set_reference(model.name, model.version, _reference(model))
            figures = loaded[0][1] if loaded and loaded[0][0] is model else {}
            metrics.set_offline(model.name, model.version, figures)
            pipeline.scorer = model  # read once per batch: lands between batches

        # either kind may replace either kind: the pipeline asks each batch's scorer what
        # inputs it reads, and pooled models key their vectors by encoder
        reloader = ModelReloader(model_path, load=load, on_swap=swap,
                                 current_version=scorer.version)
    app = create_app(settings, pipeline=pipeline, reloader=reloader, metrics=metrics,
                     state_marker=state_marker)
    # text: Faust's own (coloured) handler; json: ours, for every logger of the process
    json_logs = logging_config(settings) if settings.log_format == "json" else None
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, quiet=True,
                          logging_config=json_logs)

    @app.on_before_shutdown.connect
    async def _close(app: faust.App, **_: object) -> None:  # after streams drained
        if pipeline.latest is not None and not await pipeline.latest.flush(timeout_s=5.0):
            log.warning("latest scores still being written at shutdown; left unfinished")
        await store.stop()
        await vectors.stop()
        executor.shutdown(wait=False, cancel_futures=True)
        if reloader is not None:
            reloader.close()

    worker.execute_from_commandline()
