"""``intent-worker demo``: the main job on the embedded stack, start to finish.

Starts the embedded broker and Redis, starts the worker (a child process running
``intent-worker run``), publishes a sample clickstream, shows scores as they
arrive and ends with a summary.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from worker.errors import IntentError, ServiceUnavailable
from worker.events.parse import epoch_ms
from worker.kafka.admin import ensure_topics
from worker.kafka.publish import file_messages, publish
from worker.ops.stack import EmbeddedStack, free_port
from worker.settings import Settings, load_settings


def sample_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "sample-rees46.csv"


@dataclass
class Summary:
    events_published: int = 0
    events_scored: int = 0
    records: int = 0
    users: set[str] = field(default_factory=set)
    scores: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    dead_letters: int = 0
    alerts: list[dict] = field(default_factory=list)
    models: set[str] = field(default_factory=set)
    outcome_labels: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        def pct(xs: list[float], q: float) -> float:
            if len(xs) < 2:
                return (xs or [0])[0]
            return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]

        out = [
            f"events published   {self.events_published}",
            f"events scored      {self.events_scored} in {self.records} score records, "
            f"{len(self.users)} users, {self.seconds:.1f}s "
            f"({self.events_scored / max(self.seconds, 1e-9):,.0f} events/s)",
            f"dead letters       {self.dead_letters}",
            f"model              {', '.join(sorted(self.models)) or '-'}",
        ]
        if self.scores:
            s = sorted(self.scores)
            out.append("score              " + "  ".join(
                f"p{q}={pct(s, q):.3f}" for q in (10, 50, 90, 99)) + f"  max={s[-1]:.3f}")
            top = max(0.01, min(1.0, s[-1] * 1.0001))  # bins over the range the scores use
            hist = [0] * 10
            for x in s:
                hist[min(9, int(x / top * 10))] += 1
            for i, n in enumerate(hist):
                bar = "#" * max(1 if n else 0, round(40 * n / max(hist)))
                out.append(f"  {i * top / 10:.3f}-{(i + 1) * top / 10:.3f} {n:6d} {bar}")
        if self.latencies:
            out.append("latency ms         " + "  ".join(
                f"p{q}={pct(self.latencies, q):,.0f}" for q in (50, 95, 99)))
        kinds: dict[str, int] = {}
        for a in self.alerts:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        out.append(f"alerts             {len(self.alerts)}" + (
            " (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")" if kinds else ""))
        positives = sum(self.outcome_labels)
        out.append(f"outcomes so far    {len(self.outcome_labels)} (bought within the horizon: "
                   f"{positives}; not: {len(self.outcome_labels) - positives}; the rest wait "
                   "for event time to pass their horizon)")
        return out


async def _follow(settings: Settings, expected: int, summary: Summary, echo: Callable[[str], None],
                  timeout_s: float) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_list, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p)
               for t in (settings.topic_scores, settings.topic_dlq, settings.topic_alerts,
                         settings.topic_outcomes)
               for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        shown = 0
        while summary.events_scored + summary.dead_letters < expected:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"only {summary.events_scored + summary.dead_letters} of {expected} events "
                    f"came back in {timeout_s:.0f}s")
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                for m in msgs:
                    rec = orjson.loads(m.value)
                    if tp.topic == settings.topic_dlq:
                        summary.dead_letters += 1
                        echo(f"DLQ   {rec['reason']}: {rec['detail'][:80]}")
                        continue
                    if tp.topic == settings.topic_outcomes:
                        summary.outcome_labels.append(rec["label"])
                        continue
                    if tp.topic == settings.topic_alerts:
                        summary.alerts.append(rec)
                        echo(f"ALERT {rec['kind']} ({rec['severity']})  user {rec['user_id']}  "
                             f"{_evidence(rec['evidence'])}")
                        continue
                    summary.records += 1
                    summary.events_scored += len(rec["event_ids"])
                    summary.users.add(rec["user_id"])
                    summary.scores.append(rec["score"])
                    summary.latencies.append(rec["latency_ms"])
                    summary.models.add(f"{rec['model']['name']} {rec['model']['version']}")
                    if rec["score"] >= 0.5 or shown < 20 or summary.records % 100 == 0:
                        shown += 1
                        echo(f"score {rec['score']:.3f}  user {rec['user_id']:>10}  "
                             f"{len(rec['event_ids']):3d} new events  "
                             f"window {rec['window']['events']:3d}  "
                             f"latency {rec['latency_ms']:,.0f} ms")
    finally:
        await consumer.stop()


def _evidence(evidence: dict) -> str:
    shown = {k: v for k, v in evidence.items() if k not in ("event_ids", "thresholds")}
    return (f"{len(evidence['event_ids'])} events; "
            + ", ".join(f"{k}={v}" for k, v in shown.items()))


def demo_anomalies(messages: list[tuple[bytes | None, bytes]]) -> list[tuple[bytes | None, bytes]]:
    """Two synthetic incidents for the fraud side of the demo, timed inside the sample's event
    time: a purchase burst (8 purchases in 4 minutes) and a bot scraping (30 views, 0.2 s apart).
    Users ``demo-burst`` and ``demo-bot``; inserted mid-stream."""
    times = []
    for _, value in messages[:200]:
        try:
            ts = orjson.loads(value).get("ts")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(ts, str):
            try:
                ts = epoch_ms(datetime.fromisoformat(ts))
            except ValueError:
                continue
        if isinstance(ts, int):
            times.append(ts)
    t0 = max(times) if times else 1_700_000_000_000
    product = {"id": "demo-phone", "title": "Smartphone 256GB",
               "category": "electronics.smartphone", "brand": "demo", "price": 899.0}
    out = [{"event_id": "demo-burst-v", "user_id": "demo-burst", "event_type": "view", "ts": t0,
            "product": product}]
    out += [{"event_id": f"demo-burst-p{i}", "user_id": "demo-burst", "event_type": "purchase",
             "ts": t0 + 30_000 * (i + 1), "product": product} for i in range(8)]
    out += [{"event_id": f"demo-bot-{i}", "user_id": "demo-bot", "event_type": "view",
             "ts": t0 + 200 * i, "product": {**product, "id": f"demo-item-{i}"}} for i in range(30)]
    extra = [(e["user_id"].encode(), orjson.dumps(e)) for e in out]
    mid = len(messages) // 2
    return messages[:mid] + extra + messages[mid:]


def run_demo(*, data: Path, fmt: str, rate: float | None, timeout_s: float,
             echo: Callable[[str], None], anomalies: bool = True) -> Summary:
    workdir = Path(tempfile.mkdtemp(prefix="intent-demo-"))
    echo(f"starting the embedded stack (Tansu broker + redis-server); logs in {workdir}")
    with EmbeddedStack(kafka_port=None, redis_port=None, log_dir=workdir) as st:
        env = {**os.environ, **st.env(), "INTENT_WEB_PORT": str(free_port())}
        os.environ.update(st.env())
        settings = load_settings()
        asyncio.run(ensure_topics(settings.bootstrap_list,
                                  [settings.topic_events, settings.topic_scores,
                                   settings.topic_alerts, settings.topic_dlq,
                                   settings.topic_outcomes],
                                  partitions=settings.topic_partitions, timeout_s=30))
        log_path = workdir / "worker.log"
        echo(f"starting the worker (intent-worker run); log in {log_path}")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_ready(log_path, proc, timeout_s=180, echo=echo)
            summary = asyncio.run(_publish_and_follow(settings, data, fmt, rate, timeout_s, echo,
                                                      proc, anomalies=anomalies))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        echo(f"worker log: {log_path}")
        return summary


def _wait_ready(log_path: Path, proc: subprocess.Popen, *, timeout_s: float,
                echo: Callable[[str], None]) -> None:
    """Wait for the worker's "Ready" log line (model loaded, consumer group joined)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise IntentError(f"the worker exited with code {proc.returncode}; see {log_path}")
        if b"]: Ready" in log_path.read_bytes():
            echo("worker is ready")
            return
        time.sleep(0.5)
    raise ServiceUnavailable(f"the worker was not ready after {timeout_s:.0f}s; see {log_path}")


async def _publish_and_follow(settings: Settings, data: Path, fmt: str, rate: float | None,
                              timeout_s: float, echo: Callable[[str], None],
                              proc: subprocess.Popen, *, anomalies: bool = True) -> Summary:
    summary = Summary()
    messages = list(file_messages(data, fmt))
    if anomalies:
        messages = demo_anomalies(messages)
        echo("with two synthetic incidents for the alert topic: users demo-burst and demo-bot")
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_list, linger_ms=5)
    await producer.start()
    try:
        echo(f"publishing {len(messages)} events from {data} to {settings.topic_events}")
        start = time.monotonic()
        pub = asyncio.create_task(publish(producer, settings.topic_events, messages, rate=rate))
        follow = asyncio.create_task(_follow(settings, len(messages), summary, echo, timeout_s))
        while not follow.done():
            await asyncio.wait({follow}, timeout=1.0)
            if proc.poll() is not None:
                follow.cancel()
                raise IntentError(f"the worker exited with code {proc.returncode}; see its log")
        await follow
        report = await pub
        summary.events_published = report.messages
        summary.seconds = time.monotonic() - start
    finally:
        await producer.stop()
    return summary
