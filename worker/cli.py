"""The ``intent-worker`` command line. Settings are built here and passed down."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from worker.errors import IntentError
from worker.settings import Settings, load_settings

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


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Model directory (overrides INTENT_MODEL_PATH).")
def run(model_path: Path | None) -> None:
    """Run the scoring worker (a Faust worker) until SIGTERM or Ctrl-C."""
    settings = _settings(model_path=model_path)
    from worker.runtime import run_worker

    run_worker(settings)


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
def publish(file: Path, fmt: str, rate: float | None, topic: str | None) -> None:
    """Publish a file of events, keyed by user id."""
    settings = _settings()
    from aiokafka import AIOKafkaProducer

    from worker.kafka.admin import ensure_topics
    from worker.kafka.publish import file_messages, publish as publish_messages

    target = topic or settings.topic_events

    async def go() -> None:
        await ensure_topics(settings.bootstrap_list, [target], partitions=settings.topic_partitions,
                            timeout_s=settings.startup_timeout_s)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, linger_ms=5,
                                    max_batch_size=256 * 1024)
        await producer.start()
        try:
            report = await publish_messages(producer, target, file_messages(file, fmt), rate=rate)
        finally:
            await producer.stop()
        click.echo(f"published {report.messages} messages to {target} in {report.seconds:.2f}s "
                   f"({report.rate:,.0f}/s)")

    asyncio.run(go())


@main.command()
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Events to publish (default: the bundled REES46 sample, 3,000 events).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "rees46"]), default="rees46", show_default=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Messages per second (default: as fast as possible).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=900, show_default=True,
              help="Give up after this many seconds.")
def demo(data: Path | None, fmt: str, rate: float | None, timeout_s: float) -> None:
    """Run the main job on the embedded stack: broker, Redis, worker, sample clickstream, summary."""
    from worker.demo import run_demo, sample_path

    summary = run_demo(data=data or sample_path(), fmt=fmt, rate=rate, timeout_s=timeout_s, echo=click.echo)
    click.echo("")
    click.echo("summary")
    for line in summary.lines():
        click.echo("  " + line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
