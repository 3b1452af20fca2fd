"""One command, one broker: relay ceiling, worker without and with the model, model alone.

    python -m loadtest.bench --events 20000 --model-events 3000 [--latency-seconds 30]
        [--users 5000 --zipf-s 1.1] [--batch-max 256 --batch-wait-ms 50] [--rows abcd]
        [--bootstrap H:P --redis-url URL] [--device auto|cpu|cuda] [--out-dir bench-results]
        [--profile] [--cold-vectors] [--embed-catalog]

Without ``--bootstrap`` it starts the embedded stack (Tansu + redis-server) for the run.
Rows (see docs/benchmarks.md):

- a: ``loadtest.relay``, plain aiokafka consume -> produce of the same messages;
- b: the worker (``python -m worker.cli run``) with ``INTENT_SCORER=noop``;
- c: the worker with the real model (default settings; ``INTENT_MODEL_PATH`` if set);
- d: ``loadtest.model_bench``, the model alone on the same micro-batches as c.

Either kind of model (``text``: window texts; ``pooled``: event vectors). With a pooled model
the warm-up of c also puts the warm events' vectors into the row's Redis vector store, as a
long-running worker would have left them (``--cold-vectors``: not), and d does the same in its
memory store. After the backlog, c's ``/metrics`` page gives encoder sequences per event and
the event vectors' process and Redis hit rates (``loadtest.stats.model_stats``).

a and b drain a backlog of ``--events`` events; c and d use its first ``--model-events``
(the model is slow on a CPU). Throughput: events of output batches 2..n over the time from
the end of batch 1 to the end of batch n (Kafka timestamps; ``loadtest.stats.throughput``).
After b and c drain their backlog, the same running process gets events
paced at ``--latency-fraction`` (0.5) of the rate it just sustained, for
``--latency-seconds``: that gives the latency percentiles (``loadtest.stats``). Peak RSS is
the process' ``VmHWM``. Prints a table and writes ``bench.json`` and ``table.md`` into a
fresh folder under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtest.gen import batches, by_user, load_catalog, make_events, replay_stream
from loadtest.loadgen import Published, publish
from loadtest.procs import peak_rss_mib
from loadtest.relay import RELAY_BATCH_HEADER
from loadtest.stats import (
    OutRecord,
    coverage,
    format_table,
    latencies,
    model_stats,
    parse_metrics,
    ratio,
    throughput,
)
from worker.settings import load_settings

START_MS = 1_700_000_000_000  # event time of the first generated event
STEP_MS = 50  # event time between consecutive generated events
ROW_NAMES = {
    "a": "aiokafka relay",
    "b": "worker, noop scorer",
    "c": "worker, model",
    "d": "model alone, same batches",
}
COLUMNS = [
    ("row", "row"),
    ("what", "what"),
    ("events", "events"),
    ("events_per_s", "events/s"),
    ("seq_per_s", "records or seq/s"),
    ("events_per_seq", "events/seq"),
    ("offered_rate", "offered ev/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("p99_event_ms", "p99/event ms"),
    ("cpu_us_per_event", "CPU µs/event"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("covered", "all covered"),
]


class BenchError(Exception):
    """A row could not be measured (process died, timeout)."""


# ---------------------------------------------------------------- Kafka helpers


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    from worker.kafka.admin import ensure_topics

    await ensure_topics([bootstrap], names, partitions=partitions, timeout_s=30)


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    targets: dict[int, int],
    *,
    proc: subprocess.Popen,
    timeout_s: float,
    log: Path,
    samples: list[tuple[int, float]] | None = None,
) -> None:
    """Until ``group`` has committed ``targets`` (partition -> next offset) of ``topic``.

    With ``samples``, appends (offsets committed in all ``targets`` partitions, the process'
    CPU seconds) at every poll (every 0.5 s).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"process exited with code {proc.returncode}; log {log}:\n{_tail(log)}"
                )
            done = True
            total = 0
            for partition, end in targets.items():
                committed = await consumer.committed(TopicPartition(topic, partition))
                total += committed or 0
                if committed is None or committed < end:
                    done = False
                    if samples is None:
                        break
            if samples is not None:
                samples.append((total, cpu_seconds(proc.pid)))
            if done:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{group} did not commit {topic} within {timeout_s:.0f}s; log {log}:\n"
                    f"{_tail(log)}"
                )
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


def to_record(ts_ms: int, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> OutRecord:
    """A score record covers its ``event_ids`` (its batch: ``scored_at``, shared by a
    micro-batch); a relayed click event covers itself (its batch: the relay's header)."""
    doc = orjson.loads(value)
    ids = doc.get("event_ids")
    if ids is not None:
        return OutRecord(ts_ms, tuple(ids), doc.get("scored_at", ""))
    batch = next((v.decode() for k, v in headers if k == RELAY_BATCH_HEADER), "")
    return OutRecord(ts_ms, (doc["event_id"],), batch)


async def read_records(
    bootstrap: str, topic: str, expected: set[str], *, timeout_s: float, idle_s: float = 3.0
) -> list[OutRecord]:
    """Read ``topic`` from the start until every expected id is covered (or idle/timeout)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    records: list[OutRecord] = []
    seen: set[str] = set()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline and not expected <= seen:
            got = await consumer.getmany(timeout_ms=500, max_records=5000)
            for msgs in got.values():
                for m in msgs:
                    r = to_record(m.timestamp, m.value, m.headers or ())
                    records.append(r)
                    seen.update(r.event_ids)
                    last_new = time.monotonic()
            if not got and time.monotonic() - last_new > idle_s:
                break
    finally:
        await consumer.stop()
    return records


# ---------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), seconds; NaN without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_per_event_ms(samples: Sequence[tuple[int, float]]) -> float | None:
    """CPU ms per committed offset between the first sample after the first commit and the
    last sample (start-up CPU is left out); None without progress in between."""
    started = [s for s in samples if s[0] > 0]
    if len(started) < 2 or started[-1][0] <= started[0][0]:
        return None
    (n0, c0), (n1, c1) = started[0], started[-1]
    return (c1 - c0) * 1000.0 / (n1 - n0)


def stop_process(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_profiler(pid: int, out: Path) -> subprocess.Popen | None:
    """py-spy, attached to ``pid`` (non-blocking sampling, collapsed stacks) until it exits."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print(f"bench: no py-spy next to {sys.executable}; not profiling", file=sys.stderr)
        return None
    time.sleep(1.0)  # let the interpreter come up
    return subprocess.Popen(
        [
            str(exe),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(out.with_suffix(".log"), "wb"),
    )  # noqa: SIM115


async def scrape_model_stats(port: int, *, timeout_s: float = 10.0) -> dict | None:
    """:func:`~loadtest.stats.model_stats` of the worker serving ``/metrics`` on ``port``
    (None, said once, when the page cannot be read)."""

    def get() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - fixed http URL
            return resp.read().decode()

    try:
        return model_stats(parse_metrics(await asyncio.to_thread(get)))
    except (OSError, ValueError) as exc:
        _say(f"metrics on port {port} not read: {exc}")
        return None


# ---------------------------------------------------------------- rows


class Bench:
    def __init__(
        self, args: argparse.Namespace, *, bootstrap: str, redis_url: str, run_dir: Path
    ) -> None:
        self.args = args
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.run_dir = run_dir
        self.tag = uuid.uuid4().hex[:6]
        catalog = load_catalog(args.catalog)
        # one stream: the first --warm-events fill the windows before the rows start (steady
        # state: an active user's window is long, so is its text), the rest is the backlog
        if args.stream is not None:
            from worker.dataset.loading import load_events

            recorded = load_events(args.stream, args.stream_format).events
            stream = replay_stream(recorded, args.warm_events + args.events)
        else:
            stream = make_events(
                args.warm_events + args.events, users=args.users, zipf_s=args.zipf_s,
                catalog=catalog, seed=args.seed, start_ms=START_MS, step_ms=STEP_MS,
            )
        self.warm = stream[: args.warm_events]
        self.events = stream[args.warm_events :]
        self.model_events = self.events[: args.model_events]
        self._catalog = catalog
        self._extra_seed = args.seed + 1
        self.model_path: Path | None = None
        self.model_kind: str | None = None
        if set(args.rows) & {"c", "d"}:
            from worker.model import default_model_path, read_config

            self.model_path = load_settings().model_path or default_model_path()
            self.model_kind = read_config(self.model_path).kind
        self.topic_all = f"lt-{self.tag}-events"
        self.topic_model = f"lt-{self.tag}-events-model"
        self.published: dict[str, Published] = {}

    def topic(self, kind: str, row: str) -> str:
        return f"lt-{self.tag}-{kind}-{row}"

    async def prepare(self) -> None:
        """Create the input topics and publish the backlogs (as fast as possible)."""
        a = self.args
        await create_topics(
            self.bootstrap, [self.topic_all, self.topic_model, self.topic("out", "a")], a.partitions
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            if set(a.rows) & {"a", "b"}:
                self.published[self.topic_all] = await publish(
                    producer, self.topic_all, self.events
                )
                _say(
                    f"published {len(self.events)} events to {self.topic_all} "
                    f"({self.published[self.topic_all].rate:,.0f}/s)"
                )
            if "c" in a.rows:
                self.published[self.topic_model] = await publish(
                    producer, self.topic_model, self.model_events
                )
        finally:
            await producer.stop()
        for name, events in (("events-model.jsonl", self.model_events),
                             ("events-warm.jsonl", self.warm)):
            with (self.run_dir / name).open("wb") as fh:
                for e in events:
                    fh.write(orjson.dumps(e) + b"\n")

    def row_settings(self, row: str):
        """The settings the row's worker gets (its Redis, key prefix and device)."""
        device = {"device": self.args.device} if self.args.device else {}
        return load_settings(redis_url=self.redis_url, key_prefix=f"lt{self.tag}{row}", **device)

    async def prefill(self, row: str, *, vectors: bool = False) -> dict:
        """Append the warm-up events to the row's windows in Redis (its own key prefix), as
        the worker would have: the row starts where a long-running worker would be.

        With ``vectors``, a pooled model and no ``--cold-vectors``, the warm windows are also
        scored here, as the worker scores its batches (``build_input``, ``score_async``),
        through a :class:`~worker.vectors.RedisVectorStore` on the row's key prefix with the
        worker's encoder: their phrases' vectors are in Redis when the worker starts (its
        process cache is empty). Returns what that cost (empty when nothing was scored)."""
        if not self.warm:
            return {}
        from worker.features import build_input
        from worker.windows import RedisWindowStore

        settings = self.row_settings(row)
        store = RedisWindowStore.from_settings(settings)
        model = vector_store = None
        if vectors and self.model_kind == "pooled" and not self.args.cold_vectors:
            from worker.runtime import load_configured
            from worker.vectors import RedisVectorStore

            vector_store = RedisVectorStore.from_settings(settings)
            await vector_store.start()
            model = load_configured(settings, self.model_path, vector_store=vector_store,
                                    threads=settings.model_threads())
        await store.start()
        catalogue: dict = {}
        if model is not None and self.args.embed_catalog:
            catalogue = await self.embed_catalogue(model)
        scoring_s = 0.0
        # scoring: the worker's batch size, so every warm event is in a window scored (a big
        # chunk would push the top users' older events out of their windows unseen)
        size = self.args.batch_max if model is not None else 2000
        try:
            for chunk in batches(self.warm, size):
                windows, _ = await store.exchange(by_user(chunk))
                if model is None:
                    continue
                inputs = [build_input(w, max_chars=model.max_chars,
                                      phrase_price=model.phrase_price) for w in windows.values()]
                t0 = time.monotonic()
                await model.score_async(inputs)
                scoring_s += time.monotonic() - t0
        finally:
            await store.stop()
            if vector_store is not None:
                await vector_store.stop()
        if model is None:
            return {}
        v = model.vectors
        _say(f"{row}: warm vectors, {v.encoded} phrases encoded in {scoring_s:,.1f}s")
        return {"seconds": scoring_s, "phrases_encoded": v.encoded,
                "encoder_calls": v.encoder_calls, "encoder_id": v.encoder_id,
                "catalogue": catalogue}

    async def embed_catalogue(self, model) -> dict:
        """What ``intent-worker embed-catalog`` does with the shop's catalogue: every product
        of the generator's catalogue under each product event type, into the row's store."""
        from loadtest.gen import product_dict
        from worker.model.catalog import catalogue_phrases, embed_phrases

        phrases = catalogue_phrases([product_dict(p) for p in self._catalog],
                                    price=model.phrase_price)
        t0 = time.monotonic()
        found, encoded = await embed_phrases(model.vectors, phrases)
        seconds = time.monotonic() - t0
        _say(f"catalogue: {len(self._catalog)} products, {len(phrases)} phrases, {encoded} "
             f"encoded in {seconds:,.1f}s")
        return {"products": len(self._catalog), "phrases": len(phrases), "encoded": encoded,
                "found": found, "seconds": seconds}

    def worker_env(self, row: str, **extra: str) -> dict[str, str]:
        from worker.ops.stack import free_port

        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "INTENT_KAFKA_BOOTSTRAP": self.bootstrap,
            "INTENT_REDIS_URL": self.redis_url,
            "INTENT_APP_ID": f"lt-{self.tag}-{row}",
            "INTENT_TOPIC_EVENTS": self.topic_model if row == "c" else self.topic_all,
            "INTENT_TOPIC_SCORES": self.topic("out", row),
            "INTENT_TOPIC_DLQ": self.topic("dlq", row),
            "INTENT_TOPIC_ALERTS": self.topic("alerts", row),
            "INTENT_KEY_PREFIX": f"lt{self.tag}{row}",
            "INTENT_TOPIC_PARTITIONS": str(self.args.partitions),
            "INTENT_WEB_PORT": str(free_port()),
            "INTENT_MODEL_POLL_S": "0",
            "INTENT_BATCH_MAX": str(self.args.batch_max),
            "INTENT_BATCH_WAIT_MS": str(self.args.batch_wait_ms),
        }
        if self.args.device:
            env["INTENT_DEVICE"] = self.args.device
        env.update(self.args.worker_env)
        env.update(extra)
        return env

    async def consumer_row(
        self,
        row: str,
        cmd: list[str],
        env: dict[str, str],
        *,
        source: str,
        group: str,
        ids: list[str],
        latency: bool,
        metrics_port: int | None = None,
    ) -> dict:
        """Run a consumer process over a backlog, then (optionally) paced load; measure.
        ``metrics_port``: the worker's /metrics, read once the backlog is drained (and again
        before it stops, after a latency phase)."""
        a = self.args
        log = self.run_dir / f"{row}.log"
        out_topic = self.topic("out", row)
        result: dict = {"row": row, "what": ROW_NAMES[row]}
        with log.open("wb") as fh:
            proc = subprocess.Popen(  # noqa: ASYNC220 - a child that runs for minutes; start is instant
                cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        prof = None
        try:
            if a.profile and row in a.profile_rows:
                prof = start_profiler(proc.pid, self.run_dir / f"profile-{row}.txt")
            t0 = time.monotonic()
            samples: list[tuple[int, float]] = []
            await wait_committed(
                self.bootstrap,
                group,
                source,
                self.published[source].end_offsets,
                proc=proc,
                timeout_s=a.row_timeout,
                samples=samples,
                log=log,
            )
            result["wall_s"] = time.monotonic() - t0
            result["cpu_ms_per_event"] = cpu_per_event_ms(samples)
            if metrics_port is not None:
                result["model_stats"] = await scrape_model_stats(metrics_port)
            backlog = set(ids)
            records = [
                r
                for r in await read_records(self.bootstrap, out_topic, backlog, timeout_s=120)
                if backlog.intersection(r.event_ids)
            ]
            t = throughput(records, backlog)
            result.update(
                events=t.events,
                records=t.records,
                batches=t.batches,
                span_s=t.span_s,
                events_per_s=t.events_per_s,
                seq_per_s=t.records_per_s,
                events_per_seq=t.events_per_record,
            )
            cov = coverage(records, backlog)
            result["covered"] = cov.complete
            result["coverage"] = dataclasses.asdict(cov)
            _say(f"{row}: {result['events']} events at {result['events_per_s'] or 0:,.1f}/s")
            if latency and result["events_per_s"]:
                result.update(
                    await self.latency_phase(
                        row, source, group, proc, log, out_topic, result["events_per_s"]
                    )
                )
                if metrics_port is not None:
                    result["model_stats_at_stop"] = await scrape_model_stats(metrics_port)
            result["peak_rss_mib"] = peak_rss_mib(proc.pid)
        finally:
            stop_process(proc)
            if prof is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    prof.wait(timeout=30)
        return result

    async def latency_phase(
        self,
        row: str,
        source: str,
        group: str,
        proc: subprocess.Popen,
        log: Path,
        out_topic: str,
        sustained: float,
    ) -> dict:
        a = self.args
        offered = a.latency_rate or a.latency_fraction * sustained
        n = max(20, min(a.latency_max_events, round(offered * a.latency_seconds)))
        events = make_events(
            n,
            users=a.users,
            zipf_s=a.zipf_s,
            catalog=self._catalog,
            seed=self._extra_seed,
            prefix=f"lat{row}",
            start_ms=START_MS + (len(self.warm) + len(self.events)) * STEP_MS,
        )
        self._extra_seed += 1
        _say(f"{row}: latency phase, {n} events at {offered:,.1f}/s")
        # linger 5 ms: a produce request per message would cost the shared CPUs more than the
        # worker's own work at these rates; the linger counts in the measured latency.
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            pub = await publish(producer, source, events, rate=offered)
        finally:
            await producer.stop()
        await wait_committed(
            self.bootstrap,
            group,
            source,
            pub.end_offsets,
            proc=proc,
            timeout_s=a.row_timeout,
            log=log,
        )
        ids = set(pub.publish_ms)
        records = [
            r
            for r in await read_records(self.bootstrap, out_topic, ids, timeout_s=120)
            if ids.intersection(r.event_ids)
        ]
        per_record, per_event = latencies(records, pub.publish_ms)
        cov = coverage(records, ids)
        s, e = per_record.summary(), per_event.summary()
        covered_with_repeats = sum(len(ids.intersection(r.event_ids)) for r in records)
        return {
            "offered_rate": offered,
            "achieved_offered_rate": pub.rate,
            "latency_events": n,
            "latency_covered": cov.complete,
            "latency_events_per_seq": covered_with_repeats / len(records) if records else None,
            "p50_ms": s["p50"],
            "p95_ms": s["p95"],
            "p99_ms": s["p99"],
            "max_ms": s["max"],
            "p99_event_ms": e["p99"],
            "latency_per_record": s,
            "latency_per_event": e,
        }

    async def row_relay(self) -> dict:
        a = self.args
        group = f"lt-{self.tag}-a"
        cmd = [
            sys.executable,
            "-m",
            "loadtest.relay",
            "--bootstrap",
            self.bootstrap,
            "--source",
            self.topic_all,
            "--dest",
            self.topic("out", "a"),
            "--group",
            group,
            "--batch-max",
            str(a.batch_max),
            "--wait-ms",
            str(a.batch_wait_ms),
            "--fetch-max-wait-ms",
            str(a.relay_fetch_max_wait_ms),
        ]
        return await self.consumer_row(
            "a",
            cmd,
            dict(os.environ),
            source=self.topic_all,
            group=group,
            ids=[e["event_id"] for e in self.events],
            latency="a" in self.args.latency_rows,
        )

    async def row_worker(self, row: str) -> dict:
        extra = {"INTENT_SCORER": "noop"} if row == "b" else {}
        env = self.worker_env(row, **extra)
        warmed = await self.prefill(row, vectors=row == "c")
        evs = self.events if row == "b" else self.model_events
        result = await self.consumer_row(
            row,
            [sys.executable, "-m", "worker.cli", "run"],
            env,
            source=env["INTENT_TOPIC_EVENTS"],
            group=env["INTENT_APP_ID"],
            ids=[e["event_id"] for e in evs],
            latency=row in self.args.latency_rows,
            metrics_port=int(env["INTENT_WEB_PORT"]),
        )
        if row == "c":
            result["model_kind"] = self.model_kind
            result["warm_vectors"] = warmed or None
            stats = result.get("model_stats") or {}
            result["encoder_seq_per_event"] = stats.get("encoder_seq_per_event")
            result["process_hit_rate"] = stats.get("process_hit_rate")
            result["redis_hit_rate"] = stats.get("redis_hit_rate")
        return result

    def row_model(self) -> dict:
        a = self.args
        out = self.run_dir / "model-d.json"
        cmd = [
            sys.executable,
            "-m",
            "loadtest.model_bench",
            "--events",
            str(self.run_dir / "events-model.jsonl"),
            "--batch-max",
            str(a.batch_max),
            "--warm",
            str(self.run_dir / "events-warm.jsonl"),
            "--device",
            a.device or "auto",
            "--model",
            str(self.model_path),
            "--out",
            str(out),
        ]
        if a.cold_vectors:
            cmd.append("--cold-vectors")
        # the worker's torch threads (INTENT_TORCH_THREADS; unset = torch's default in both):
        # c and d run the same model configuration, so c/d measures what streaming adds
        if load_settings().model_threads() is not None:
            cmd += ["--threads", str(load_settings().model_threads())]
        with (self.run_dir / "d.log").open("wb") as fh:
            t0 = time.monotonic()
            proc = subprocess.run(
                cmd, stdout=subprocess.DEVNULL, stderr=fh, check=False, timeout=a.row_timeout
            )
        if proc.returncode != 0:
            raise BenchError(
                f"model_bench failed ({proc.returncode}):\n{_tail(self.run_dir / 'd.log')}"
            )
        doc = orjson.loads(out.read_bytes())
        r = doc["results"][0]
        return {
            "row": "d",
            "what": ROW_NAMES["d"],
            "events": r["events"],
            "wall_s": time.monotonic() - t0,
            "cpu_ms_per_event": r.get("cpu_ms_per_event"),
            "events_per_s": r["events_per_s"],
            "seq_per_s": r["seq_per_s"],
            "events_per_seq": r["events_per_sequence"],
            "batch_ms": r["batch_ms"],
            "batches": r["batches"],
            "model": doc["env"].get("model"),
            "model_kind": (doc["env"].get("model") or {}).get("kind"),
            "device": doc["env"]["device"],
            "vectors": r.get("vectors"),
            "warm_vectors": r.get("warm_vectors"),
            "encoder_seq_per_event": r.get("encoder_seq_per_event"),
            "process_hit_rate": (r.get("vectors") or {}).get("process_hit_rate"),
            "redis_hit_rate": (r.get("vectors") or {}).get("store_hit_rate"),
        }


def summarise(rows: dict[str, dict], args: argparse.Namespace) -> dict:
    """Ratios and the issue's targets, from the rows that ran."""
    a, b, c, d = (rows.get(k, {}) for k in "abcd")
    out: dict = {
        "b_over_a": ratio(b.get("events_per_s"), a.get("events_per_s")),
        "c_over_b": ratio(c.get("events_per_s"), b.get("events_per_s")),
        "c_encoder_seq_per_event": c.get("encoder_seq_per_event"),
        "c_process_hit_rate": c.get("process_hit_rate"),
        "c_redis_hit_rate": c.get("redis_hit_rate"),
        "c_over_d_events": ratio(c.get("events_per_s"), d.get("events_per_s")),
        "c_over_d_seq": ratio(c.get("seq_per_s"), d.get("seq_per_s")),
        "c_events_per_model_seq": ratio(c.get("events_per_s"), c.get("seq_per_s")),
        "c_events_over_d_seq": ratio(c.get("events_per_s"), d.get("seq_per_s")),
        # CPU per event: robust to other jobs on the machine (wall-clock rates are not)
        "a_over_b_cpu": ratio(a.get("cpu_ms_per_event"), b.get("cpu_ms_per_event")),
        "d_over_c_cpu": ratio(d.get("cpu_ms_per_event"), c.get("cpu_ms_per_event")),
    }
    p99_batch = (d.get("batch_ms") or {}).get("p99")
    bound = args.batch_wait_ms + 2 * p99_batch if p99_batch is not None else None
    out["latency_bound_ms"] = bound

    def check(value: float | None, op: str, target: float | None) -> dict:
        shown = f"{op} {target:g}" if target is not None else None
        if value is None or target is None:
            return {"value": value, "target": shown, "met": None}
        met = value >= target if op == ">=" else value <= target
        return {"value": value, "target": shown, "met": met}

    out["targets"] = {
        "b/a >= 0.5": check(out["b_over_a"], ">=", 0.5),
        "c/d >= 0.9 (events/s, same batches)": check(out["c_over_d_events"], ">=", 0.9),
        "Zipf: events/s >= 3 x model seq/s (worker c)": check(
            out["c_events_per_model_seq"], ">=", 3.0
        ),
        "every event covered (c)": {"value": c.get("covered"), "met": c.get("covered")},
        "p99 latency (c) <= wait + 2 x p99 batch (d)": check(c.get("p99_ms"), "<=", bound),
        "c/b >= 0.25 (events/s, same run)": check(out["c_over_b"], ">=", 0.25),
        "encoder sequences per event (c) <= 0.3": check(
            out["c_encoder_seq_per_event"], "<=", 0.3
        ),
    }
    return out


def render(rows: dict[str, dict], summary: dict, meta: dict) -> str:
    for r in rows.values():
        ms = r.get("cpu_ms_per_event")
        r["cpu_us_per_event"] = round(ms * 1000, 1) if ms is not None else None
    table = format_table([rows[k] for k in "abcd" if k in rows], COLUMNS)
    lines = [table, ""]
    for key in (
        "b_over_a",
        "c_over_b",
        "c_encoder_seq_per_event",
        "c_process_hit_rate",
        "c_redis_hit_rate",
        "c_over_d_events",
        "c_over_d_seq",
        "c_events_per_model_seq",
        "c_events_over_d_seq",
        "a_over_b_cpu",
        "d_over_c_cpu",
        "latency_bound_ms",
    ):
        v = summary.get(key)
        lines.append(f"{key:24s} {'-' if v is None else f'{v:,.3f}'}")
    lines.append("")
    for name, t in summary["targets"].items():
        met = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        v = t["value"]
        vs = f"{v:,.3f}" if isinstance(v, float) else str(v)
        lines.append(f"{met:8s} {name}: {vs} (target {t.get('target', 'true')})")
    lines.append("")
    model = meta.get("model")
    if model:
        lines.append(f"model: {model['kind']} at {model['path']}; serving in c: "
                     f"{model.get('serving_c') or '-'}")
    lines.append(f"machine: {meta['machine']}; {meta['started']}; args: {meta['command']}")
    load = meta["loadavg_1_5_15"]
    lines.append(f"load average (1/5/15 min) before {load['before']}, after {load['after']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict:
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    run_dir = args.out_dir / started.strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = None
    if args.bootstrap:
        bootstrap, redis_url = args.bootstrap, args.redis_url
    else:
        from worker.ops.stack import EmbeddedStack

        stack = EmbeddedStack(log_dir=run_dir).start()
        bootstrap, redis_url = stack.kafka_bootstrap, stack.redis_url
    rows: dict[str, dict] = {}
    bench: Bench | None = None
    try:
        bench = Bench(args, bootstrap=bootstrap, redis_url=redis_url, run_dir=run_dir)
        await bench.prepare()
        steps: dict[str, Callable] = {
            "a": bench.row_relay,
            "b": lambda: bench.row_worker("b"),
            "c": lambda: bench.row_worker("c"),
        }
        for row in args.rows:
            _say(f"row {row}: {ROW_NAMES[row]}")
            try:
                rows[row] = bench.row_model() if row == "d" else await steps[row]()
            except BenchError as exc:
                _say(f"row {row} failed: {exc}")
                rows[row] = {"row": row, "what": ROW_NAMES[row], "error": str(exc)}
    finally:
        if stack is not None:
            stack.stop()
    summary = summarise(rows, args)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "command": " ".join(sys.argv[1:]) if sys.argv else "",
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "settings": {
            "events": args.events,
            "warm_events": args.warm_events,
            "model_events": args.model_events,
            "users": args.users,
            "stream": str(args.stream) if args.stream else None,
            "zipf_s": args.zipf_s,
            "batch_max": args.batch_max,
            "batch_wait_ms": args.batch_wait_ms,
            "partitions": args.partitions,
            "latency_fraction": args.latency_fraction,
            "latency_seconds": args.latency_seconds,
            "device": args.device or "auto",
            "cold_vectors": args.cold_vectors,
            "embed_catalog": args.embed_catalog,
            "torch_threads": load_settings().model_threads(),
            "worker_env": args.worker_env,
        },
        "broker": "embedded Tansu + redis-server" if stack is not None else args.bootstrap,
        "model": None,
    }
    if bench is not None and bench.model_path is not None:
        serving = ((rows.get("c") or {}).get("model_stats") or {}).get("model")
        meta["model"] = {
            "path": str(bench.model_path),
            "kind": bench.model_kind,
            "serving_c": f"{serving['name']} {serving['version']}" if serving else None,
        }
    doc = {"meta": meta, "rows": rows, "summary": summary}
    text = render(rows, summary, meta)
    (run_dir / "bench.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    (run_dir / "table.md").write_text(text + "\n")
    print(text)
    _say(f"results in {run_dir}")
    if args.profile:
        from loadtest.profile import summarise_file

        for row in args.profile_rows:
            path = run_dir / f"profile-{row}.txt"
            if path.exists():
                report = summarise_file(path)
                (run_dir / f"profile-{row}.summary.txt").write_text(report)
                print(f"\nprofile of row {row} ({path}):\n{report}")
    return doc


def _say(msg: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000, help="backlog of rows a and b")
    ap.add_argument(
        "--model-events",
        type=int,
        default=None,
        help="backlog of rows c and d: the first N of the same events (default: all)",
    )
    ap.add_argument(
        "--warm-events",
        type=int,
        default=20000,
        help="events of the same users appended to the windows of b, c and d before they start "
        "(0: cold windows)",
    )
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--catalog", type=Path, default=None, help="REES46 CSV for products")
    ap.add_argument(
        "--stream",
        type=Path,
        default=None,
        help="replay this recorded stream (e.g. the REES46 dev slice) instead of generating "
        "one: repeated with new event ids and shifted times, users unchanged",
    )
    ap.add_argument("--stream-format", default="rees46", choices=("rees46", "jsonl"))
    ap.add_argument("--batch-max", type=int, default=256, help="INTENT_BATCH_MAX of every row")
    ap.add_argument(
        "--batch-wait-ms", type=int, default=50, help="INTENT_BATCH_WAIT_MS of every row"
    )
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument(
        "--relay-fetch-max-wait-ms",
        type=int,
        default=500,
        help="fetch_max_wait_ms of row a (aiokafka's default; Faust's consumer uses 1500)",
    )
    ap.add_argument("--rows", default="abcd", help="which rows, in order (default abcd)")
    ap.add_argument(
        "--latency-rows", default="bc", help="rows that also get the paced latency phase"
    )
    ap.add_argument("--latency-fraction", type=float, default=0.5)
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="a fixed offered rate (events/s) instead of the fraction",
    )
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--latency-max-events", type=int, default=50_000)
    ap.add_argument("--row-timeout", type=float, default=900.0)
    ap.add_argument(
        "--device",
        default=None,
        choices=("auto", "cpu", "cuda"),
        help="INTENT_DEVICE for c and d (default: the worker's default, auto)",
    )
    ap.add_argument(
        "--bootstrap", default=None, help="use this Kafka instead of the embedded stack"
    )
    ap.add_argument("--redis-url", default=None, help="with --bootstrap")
    ap.add_argument("--out-dir", type=Path, default=Path("bench-results"))
    ap.add_argument(
        "--cold-vectors",
        action="store_true",
        help="pooled model: leave the vector stores of c and d empty (warm windows only)",
    )
    ap.add_argument(
        "--embed-catalog",
        action="store_true",
        help="pooled model: before row c, embed the generator's whole product catalogue into "
        "its vector store, as 'intent-worker embed-catalog' does for a shop",
    )
    ap.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the workers of rows b and c (repeatable), e.g. "
        "INTENT_OUTCOMES_ENABLED=off or INTENT_SHADOW_MODEL_PATH=DIR",
    )
    ap.add_argument("--profile", action="store_true", help="attach py-spy to the profiled rows")
    ap.add_argument("--profile-rows", default="b", help="rows py-spy profiles with --profile")
    args = ap.parse_args(argv)
    if args.bootstrap and not args.redis_url:
        ap.error("--bootstrap needs --redis-url")
    pairs = {}
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("INTENT_"):
            ap.error(f"--worker-env {item!r}: expected INTENT_NAME=VALUE")
        pairs[name] = value
    args.worker_env = pairs
    bad = set(args.rows) - set(ROW_NAMES)
    if bad:
        ap.error(f"unknown rows {''.join(sorted(bad))}; choose from abcd")
    if args.model_events is None or args.model_events > args.events:
        args.model_events = args.events
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    doc = asyncio.run(run(args))
    return 1 if any("error" in r for r in doc["rows"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
