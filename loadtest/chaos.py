"""Chaos soak: REES46-derived events through two workers under a seeded schedule of faults.

    python -m loadtest.chaos [--events 200000] [--rate 350] [--seed 16] [--json out.json]
                             [--workdir DIR] [--each 3]
    python -m loadtest.chaos --recheck WORKDIR [--json out.json]

Starts its own Tansu broker and a redis-server with AOF (``--appendonly yes --appendfsync
everysec``, as docker-compose.yml runs it), two ``intent-worker run`` processes in one
consumer group (the shipped model, ``--scorer``; outcome tracking and anomaly detection on, as
by default), and feeds ``--events`` valid events derived from the REES46 dev file (copies of it
with a user-id and event-id suffix per copy, shifted in event time, in event-time order, keyed
by user) plus a small share of invalid messages, at ``--rate`` messages/s. Meanwhile a
schedule drawn from ``random.Random(--seed)`` applies, one after another with room to
recover: SIGKILL of a worker (restarted), SIGTERM of a worker (restarted), Redis stopped with
SIGTERM or SIGKILL and started again on the same port and directory (the AOF reloads), and
the broker paused with SIGSTOP for 5-20 s. Worker faults hit the second worker; the first
runs the whole soak. At the end (everything fed, the group's offsets at the log ends) it
checks what docs/chaos.md lists and prints (and writes with ``--json``) the report; exit
code 0 when every check holds. ``--recheck`` runs nothing: it checks a finished run again
from what it left in its workdir (loadtest/chaos_record.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtest.chaos_checks import (
    Fault,
    Lifetime,
    Produced,
    alert_conflicts,
    attribute_duplicates,
    counters_vs_topics,
    dead_letter_check,
    rebalance_summary,
    recovery_times,
    rss_summary,
    summarise_recoveries,
)
from loadtest.chaos_record import (
    Clock,
    delivery_resends,
    dump_truth,
    read_rebalances,
    recheck,
    sigkill_tail,
)
from loadtest.inject_anomalies import InjectConfig, inject
from loadtest.procs import rss_mib
from tests.e2e.helpers import committed_offsets, read_all, read_windows, wait_for, wait_log
from worker.dataset.loading import load_events
from worker.ops.stack import Process, free_port, start_redis, start_tansu

log = logging.getLogger("chaos")

DATA = Path("/work/shared/data/rees46/events-dev.csv")
READY = "[^Worker]: Ready"
GROUP = "chaos"
PARTITIONS = 8
TOPICS = {"events": "clickstream", "scores": "intent-scores", "alerts": "anomaly-alerts",
          "dlq": "clickstream-dlq"}
WINDOW_MAX = 50
WINDOW_SECONDS = 3600
KINDS = ("worker_sigkill", "worker_sigterm", "redis_sigterm", "redis_sigkill", "broker_pause")
EVENTS_IN = "intent_events_in_total"
FAMILIES = {"scores": "intent_scores_total", "dlq": "intent_dead_letters_total",
            "alerts": "intent_alerts_total"}
STAMPS = {"scores": "scored_at", "dlq": "received_at", "alerts": "detected_at"}
INVALID = (b"{not json", b'{"event_id": "x", "user_id": "u", "event_type": "teleport", "ts": 1}',
           b'{"event_id": "x", "user_id": "u", "event_type": "view", "ts": 1, "surprise": 1}',
           b'{"event_id": "x", "event_type": "view", "ts": 1}', b"[1, 2, 3]")


# --- events --------------------------------------------------------------------------------


def derive_messages(path: Path, events: int, *, invalid_share: float, anomalies: int,
                    rnd: random.Random) -> list[tuple[bytes, bytes, str | None]]:
    """``(key, value, event_id or None)``: copies of the file's events with ``anomalies`` of
    each kind injected (loadtest/inject_anomalies.py; copy ``k``: ids with ``~k``, event time
    shifted by ``k`` times the file's span plus a minute), in event-time order, the first
    ``events`` of them, with invalid messages mixed in at random places."""
    base = load_events(path, "rees46").events
    if anomalies:
        base = inject(base, seed=rnd.randrange(1 << 30),
                      config=InjectConfig(per_kind=anomalies))[0]
    span = base[-1]["ts"] - base[0]["ts"] + 60_000
    out: list[tuple[bytes, bytes, str | None]] = []
    for k in range(math.ceil(events / len(base))):
        for e in base:
            if len(out) == events:
                break
            ev = {**e, "user_id": f"{e['user_id']}~{k}", "event_id": f"{e['event_id']}~{k}",
                  "ts": e["ts"] + k * span}
            if "session_id" in ev:
                ev["session_id"] = f"{ev['session_id']}~{k}"
            out.append((ev["user_id"].encode(), orjson.dumps(ev), ev["event_id"]))
    n_bad = round(events * invalid_share)
    for i in sorted((rnd.randrange(len(out)) for _ in range(n_bad)), reverse=True):
        out.insert(i, (out[i][0], INVALID[i % len(INVALID)], None))
    return out


# --- processes -----------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float] | None:
    """The worker's counter families of interest, summed over labels; None when unreachable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",  # noqa: S310 - loopback
                                    timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    wanted = {*FAMILIES.values(), EVENTS_IN}
    sums = dict.fromkeys(wanted, 0.0)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in wanted:
                sums[s.name] += s.value
    return sums


class Workers:
    """The two worker slots, their lifetimes, and a sampler thread (RSS every ``sample_s``,
    /metrics every second)."""

    def __init__(self, env: dict[str, str], workdir: Path, *, sample_s: float) -> None:
        self.env, self.workdir, self.sample_s = env, workdir, sample_s
        self.procs: dict[str, tuple[subprocess.Popen, Lifetime, int]] = {}
        self.lifetimes: list[Lifetime] = []
        self.logs: list[Path] = []
        self.clock: list[tuple[float, int]] = []  # (monotonic, wall ms), one a second
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self, slot: str) -> tuple[subprocess.Popen, Path]:
        n = sum(1 for lt in self.lifetimes if lt.name.startswith(slot))
        port = free_port()
        log_path = self.workdir / f"{slot}-{n}.log"
        self.logs.append(log_path)
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "-m", "worker.cli", "run"],
                env={**os.environ, **self.env, "INTENT_WEB_PORT": str(port),
                     "PYTHONUNBUFFERED": "1"},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lt = Lifetime(name=f"{slot}-{n}", pid=proc.pid, started=time.monotonic())
        with self._lock:
            self.procs[slot] = (proc, lt, port)
            self.lifetimes.append(lt)
        if not self._thread.is_alive():
            self._thread.start()
        return proc, log_path

    def _scrape_into(self, lt: Lifetime, port: int) -> None:
        got = scrape(port)
        if got is not None:
            lt.last_scrape, lt.last_scrape_at = got, time.monotonic()
            lt.last_scrape_wall_ms = time.time_ns() // 1_000_000

    def _sample(self) -> None:
        next_rss = 0.0
        while not self._stop.wait(1.0):
            with self._lock:
                live = [(p, lt, port) for p, lt, port in self.procs.values() if p.poll() is None]
            now = time.monotonic()
            self.clock.append((now, time.time_ns() // 1_000_000))
            for proc, lt, port in live:
                self._scrape_into(lt, port)
                if now >= next_rss:
                    mib = rss_mib(proc.pid)
                    if mib is not None:
                        consumed = (lt.last_scrape or {}).get(EVENTS_IN, 0.0)
                        lt.rss.append((now, mib, consumed))
            if now >= next_rss:
                next_rss = now + self.sample_s

    def stop(self, slot: str, sig: int, kind: str) -> int:
        """Signal the slot's process and wait for it (scraping until it is gone on SIGTERM)."""
        with self._lock:
            proc, lt, port = self.procs.pop(slot)
        if sig != signal.SIGKILL:
            self._scrape_into(lt, port)
        lt.ended_wall_ms = time.time_ns() // 1_000_000
        proc.send_signal(sig)
        while proc.poll() is None:
            if sig != signal.SIGKILL:
                self._scrape_into(lt, port)
            time.sleep(0.1)
        lt.ended, lt.end_kind, lt.exit_code = time.monotonic(), kind, proc.returncode
        return proc.returncode

    def scrape_all(self) -> None:
        with self._lock:
            live = list(self.procs.values())
        for _, lt, port in live:
            self._scrape_into(lt, port)

    def close(self) -> None:
        for slot in list(self.procs):
            self.stop(slot, signal.SIGTERM, "final")
        self._stop.set()


class Redis:
    """redis-server with AOF on one port and directory, stopped and started again."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.dir = free_port(), workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.port, workdir=self.dir,
                                extra=["--appendonly", "yes", "--appendfsync", "everysec"])

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.proc.send_signal(sig)
        self.proc.proc.wait(timeout=60)


# --- the live parts: feeder, cover reader --------------------------------------------------


async def feed(bootstrap: str, messages: list[tuple[bytes, bytes, str | None]], rate: float,
               produced: list[Produced], stats: dict) -> None:
    """Send every message at ``rate``/s; a send that fails is sent again (counted) until the
    broker acknowledges it. ``produced`` gets each acknowledged (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                request_timeout_ms=40_000, acks="all")
    await producer.start()
    pending: set[asyncio.Task] = set()

    async def one(key: bytes, value: bytes, eid: str | None) -> None:
        sent = time.monotonic()
        while True:
            try:
                fut = await producer.send(TOPICS["events"], value=value, key=key)
                meta = await fut
            except Exception as exc:  # noqa: BLE001 - any failure: send again, counted
                stats["resends"] = stats.get("resends", 0) + 1
                stats["last_error"] = repr(exc)
                await asyncio.sleep(0.5)
                continue
            produced.append(Produced(eid, meta.partition, meta.offset, sent, time.monotonic()))
            return

    try:
        start = time.monotonic()
        for i, (key, value, eid) in enumerate(messages):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(key, value, eid))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if len(pending) > 50_000:  # the broker is paused: do not pile up forever
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        while pending:
            await asyncio.wait(set(pending))
    finally:
        await producer.stop()


async def read_covers(bootstrap: str, first_cover: dict[str, float], stop: asyncio.Event) -> None:
    """Follow the scores topic from the start: the first monotonic time each event id is seen."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(TOPICS["scores"])
        while not parts and not stop.is_set():
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(TOPICS["scores"])
            await asyncio.sleep(0.5)
        tps = [TopicPartition(TOPICS["scores"], p) for p in sorted(parts or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    for eid in orjson.loads(m.value)["event_ids"]:
                        first_cover.setdefault(eid, now)
    finally:
        await consumer.stop()


async def log_ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in sorted(ends.items())}
    finally:
        await consumer.stop()


# --- faults --------------------------------------------------------------------------------


def schedule(rnd: random.Random, each: int) -> list[dict]:
    """``each`` faults of every kind (Redis: SIGTERM and SIGKILL at least once each), in a
    seeded order, each with its parameters."""
    kinds = [k for k in KINDS if not k.startswith("redis")] * each
    kinds += ["redis_sigterm", "redis_sigkill"] * max(1, each - 1)
    rnd.shuffle(kinds)
    plan = []
    for kind in kinds:
        p: dict = {"kind": kind}
        if kind == "broker_pause":
            p["pause_s"] = round(rnd.uniform(5, 20), 1)
        else:
            p["down_s"] = round(rnd.uniform(1, 5), 1)
        p["gap_jitter"] = round(rnd.uniform(0, 0.5), 2)
        plan.append(p)
    return plan


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.rnd = random.Random(args.seed)
        self.produced: list[Produced] = []
        self.first_cover: dict[str, float] = {}
        self.faults: list[Fault] = []
        self.feed_stats: dict = {}
        self.loop = asyncio.get_running_loop()
        self.tansu: Process | None = None
        self.redis = Redis(workdir)
        self.workers: Workers | None = None
        self.messages: list[tuple[bytes, bytes, str | None]] = []
        self.started_utc = datetime.now(UTC).isoformat(timespec="seconds")
        self.t0, self.t0_wall_ms = 0.0, 0
        self.feeding: asyncio.Future | None = None

    @property
    def bootstrap(self) -> str:
        assert self.tansu is not None
        return f"127.0.0.1:{self.tansu.port}"

    async def in_thread(self, fn, *a):  # noqa: ANN001, ANN202 - thin executor wrapper
        return await self.loop.run_in_executor(None, fn, *a)

    async def offsets_now(self) -> tuple[dict[int, int], dict[int, int]]:
        committed = await asyncio.wait_for(
            committed_offsets(self.bootstrap, GROUP, TOPICS["events"]), 30)
        ends = await asyncio.wait_for(log_ends(self.bootstrap, TOPICS["events"]), 30)
        return committed, ends

    def covered_until(self, t: float) -> bool:
        """Every valid event sent by ``t`` and acknowledged is covered."""
        return all(m.event_id in self.first_cover for m in self.produced
                   if m.event_id is not None and m.sent_at <= t)

    async def apply(self, p: dict) -> Fault:
        kind = p["kind"]
        committed, ends = await self.offsets_now()
        at = time.monotonic()
        detail: dict = {k: v for k, v in p.items() if k not in ("kind", "gap_jitter")}
        assert self.workers is not None
        if kind.startswith("worker"):
            sig = signal.SIGKILL if kind == "worker_sigkill" else signal.SIGTERM
            detail["exit_code"] = await self.in_thread(self.workers.stop, "w2", sig,
                                                       kind.split("_")[1])
            await asyncio.sleep(p["down_s"])
            proc, path = self.workers.start("w2")
            detail["ready"] = await wait_log(path, READY, timeout_s=120, proc=proc)
        elif kind.startswith("redis"):
            sig = signal.SIGKILL if kind == "redis_sigkill" else signal.SIGTERM
            await self.in_thread(self.redis.kill, sig)
            await asyncio.sleep(p["down_s"])
            await self.in_thread(self.redis.start)
        else:
            assert self.tansu is not None
            os.kill(self.tansu.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(p["pause_s"])
            finally:
                os.kill(self.tansu.proc.pid, signal.SIGCONT)
        end = time.monotonic()
        fault = Fault(kind, at, end, committed, ends, detail)
        fault.detail["mid_stream"] = self.feeding is not None and not self.feeding.done()
        self.faults.append(fault)
        log.info("fault %d %s at %.1fs for %.1fs; committed %s log end %s", len(self.faults),
                 kind, at - self.t0, end - at, committed, ends)
        return fault

    async def run_schedule(self, plan: list[dict], gap_s: float) -> None:
        for p in plan:
            await asyncio.sleep(gap_s * (1 + p["gap_jitter"]))
            fault = await self.apply(p)
            # room to recover before the next fault
            await wait_for(lambda f=fault: self.covered_until(f.end), timeout_s=120, every_s=0.5)

    async def drained(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        valid = {m.event_id for m in self.produced if m.event_id is not None}
        while time.monotonic() < deadline:
            if valid <= self.first_cover.keys():
                committed, ends = await self.offsets_now()
                if all(committed.get(p, 0) >= e for p, e in ends.items()):
                    return True
            await asyncio.sleep(2)
        return False

    async def run(self) -> dict:
        args, workdir = self.args, self.workdir
        messages = self.messages = derive_messages(
            DATA, args.events, invalid_share=args.invalid_share, anomalies=args.anomalies,
            rnd=self.rnd)
        plan = schedule(self.rnd, args.each)
        feed_s = len(messages) / args.rate
        # each fault's own time, about 5 s to recover, and a restarted worker's start-up
        busy_s = sum(p.get("pause_s", p.get("down_s", 0)) + 7
                     + (12 if p["kind"].startswith("worker") else 0) for p in plan)
        gap_s = args.gap_s or max(5.0, (feed_s - 20 - busy_s) / (len(plan) + 0.5) / 1.25)
        self.tansu = await self.in_thread(
            lambda: start_tansu(log_path=workdir / "tansu.log"))
        await self.in_thread(self.redis.start)
        env = {"INTENT_KAFKA_BOOTSTRAP": self.bootstrap, "INTENT_REDIS_URL": self.redis.url,
               "INTENT_APP_ID": GROUP, "INTENT_SCORER": args.scorer,
               "INTENT_KEY_PREFIX": "chaos", "INTENT_TOPIC_PARTITIONS": str(PARTITIONS),
               "INTENT_WINDOW_MAX_EVENTS": str(WINDOW_MAX),
               "INTENT_WINDOW_SECONDS": str(WINDOW_SECONDS),
               "INTENT_KAFKA_SESSION_TIMEOUT_S": "10", "INTENT_STARTUP_TIMEOUT_S": "120",
               "INTENT_LOG_LEVEL": "INFO"}
        self.workers = Workers(env, workdir, sample_s=args.sample_s)
        try:
            for slot in ("w1", "w2"):
                proc, path = self.workers.start(slot)
                if not await wait_log(path, READY, timeout_s=120, proc=proc):
                    raise SystemExit(f"{slot} never got ready; see {path}")
            stop_reading = asyncio.Event()
            reader = asyncio.ensure_future(read_covers(self.bootstrap, self.first_cover,
                                                       stop_reading))
            self.t0, self.t0_wall_ms = time.monotonic(), time.time_ns() // 1_000_000
            log.info("feeding %d messages at %.0f/s (%.0fs); %d faults, gap %.0fs; workdir %s",
                     len(messages), args.rate, feed_s, len(plan), gap_s, workdir)
            self.feeding = asyncio.ensure_future(
                feed(self.bootstrap, messages, args.rate, self.produced, self.feed_stats))
            await self.run_schedule(plan, gap_s)
            await self.feeding
            t_fed = time.monotonic()
            drained = await self.drained(args.drain_timeout_s)
            t_drained = time.monotonic()
            await asyncio.sleep(2.5)
            await self.in_thread(self.workers.scrape_all)
            stop_reading.set()
            await reader
            report = await self.check(messages, t_fed=t_fed, t_drained=t_drained,
                                      drained=drained, gap_s=gap_s)
        finally:
            if self.workers is not None:
                await self.in_thread(self.workers.close)
            if self.redis.proc is not None:
                self.redis.proc.stop()
            if self.tansu is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.tansu.proc.pid, signal.SIGCONT)
                self.tansu.stop()
        return report

    async def check(self, messages: list, *, t_fed: float, t_drained: float, drained: bool,
                    gap_s: float) -> dict:
        assert self.workers is not None
        bs = self.bootstrap
        scores = await read_all(bs, TOPICS["scores"], timeout_s=300)
        alerts = await read_all(bs, TOPICS["alerts"], timeout_s=60)
        dlq = await read_all(bs, TOPICS["dlq"], timeout_s=60)
        valid = {m.event_id for m in self.produced if m.event_id is not None}
        counts: dict[str, int] = {}
        for r in scores:
            for eid in r["event_ids"]:
                counts[eid] = counts.get(eid, 0) + 1
        missing = valid - counts.keys()
        coverage = {"valid_events": len(valid), "covered": len(valid & counts.keys()),
                    "score_records": len(scores),
                    "problems": [f"{len(missing)} valid events never scored, e.g. "
                                 f"{sorted(missing)[:5]}"] if missing else []}
        end_of_run = t_drained
        recovery_times(self.produced, self.first_cover, self.faults, end_of_run=end_of_run)
        clock = Clock([(self.t0, self.t0_wall_ms / 1000),
                       *((m, w / 1000) for m, w in self.workers.clock)])
        rebs = [r for r in read_rebalances(self.workers.logs, GROUP, clock)
                if r.start <= t_drained]
        dups = attribute_duplicates(counts, self.produced, self.faults, rebs)
        windows = await self.window_check()
        alert_rep = alert_conflicts(alerts)
        dl = dead_letter_check(dlq, self.produced, TOPICS["events"])
        rss = rss_summary(self.workers.lifetimes, warmup_events=self.args.warmup_events,
                          margin=self.args.rss_margin, min_span_s=60)
        records = {"scores": scores, "dlq": dlq, "alerts": alerts}
        tails = {FAMILIES[k]: sigkill_tail(recs, STAMPS[k], self.workers.lifetimes)
                 for k, recs in records.items()}
        resends = delivery_resends(self.workers.logs, TOPICS, FAMILIES)
        counters = counters_vs_topics(self.workers.lifetimes,
                                      {FAMILIES[k]: len(v) for k, v in records.items()},
                                      tails, resends)
        latency = [self.first_cover[m.event_id] - m.acked_at for m in self.produced
                   if m.event_id in self.first_cover]
        faults = [{"n": i, "kind": f.kind, "at_s": round(f.at - self.t0, 1),
                   "duration_s": round(f.end - f.at, 1),
                   "recovery_s": round(f.recovered_at - f.end, 1) if f.recovered_at else None,
                   "committed_before": f.committed, "log_end_before": f.log_end, **f.detail,
                   **reb}
                  for i, (f, reb) in enumerate(zip(self.faults,
                                                   rebalance_summary(self.faults, rebs),
                                                   strict=True))]
        dump_truth(self.workdir / "truth.json", t0=self.t0, t0_wall_ms=self.t0_wall_ms,
                   clock=self.workers.clock,
                   produced=self.produced, faults=self.faults,
                   lifetimes=self.workers.lifetimes, first_cover=self.first_cover,
                   scores=scores)
        checks = {"coverage": coverage, "duplicates": dups, "windows": windows,
                  "alerts": alert_rep, "dead_letters": dl, "rss": rss, "counters": counters}
        problems = [p for c in checks.values() for p in c["problems"]]
        if not drained:
            problems.append("the group never reached the log ends (not drained)")
        return {
            "events": len(valid), "messages": len(messages),
            "invalid_messages": sum(1 for m in messages if m[2] is None),
            "users": len({m[0] for m in messages}), "rate": self.args.rate,
            "seed": self.args.seed, "scorer": self.args.scorer,
            "feed_s": round(t_fed - self.t0, 1), "drained_s": round(t_drained - self.t0, 1),
            "gap_s": round(gap_s, 1), "feeder_resends": self.feed_stats.get("resends", 0),
            "cover_latency_s": {"median": round(statistics.median(latency), 2),
                                "p99": round(sorted(latency)[int(len(latency) * 0.99)], 2),
                                "max": round(max(latency), 2)} if latency else None,
            "recovery_per_kind": summarise_recoveries(self.faults), "faults": faults,
            "checks": checks, "problems": problems, "ok": not problems,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(),
                        "loadavg_end": os.getloadavg()},
            "started_utc": self.started_utc, "workdir": str(self.workdir),
        }

    async def window_check(self) -> dict:
        users = sorted({m[0].decode() for m in self.messages if m[2] is not None})
        dup_windows, events_seen = [], 0
        for i in range(0, len(users), 2000):
            windows = await read_windows(self.redis.url, "chaos", users[i:i + 2000],
                                         max_events=WINDOW_MAX, window_seconds=WINDOW_SECONDS)
            for user, evs in windows.items():
                ids = [e["event_id"] for e in evs]
                events_seen += len(ids)
                if len(ids) != len(set(ids)):
                    dup_windows.append(user)
        return {"users": len(users), "window_events": events_seen,
                "windows_with_a_duplicate": len(dup_windows),
                "problems": [f"duplicate event ids in {len(dup_windows)} windows, "
                             f"e.g. {dup_windows[:5]}"] if dup_windows else []}



async def main_async(args: argparse.Namespace) -> dict:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="intent-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = await Chaos(args, workdir).run()
    # beside truth.json, for --recheck
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m loadtest.chaos",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="valid events to feed")
    ap.add_argument("--rate", type=float, default=350.0, help="messages per second")
    ap.add_argument("--seed", type=int, default=16, help="seed of the fault schedule and data")
    ap.add_argument("--each", type=int, default=3, help="faults of each kind")
    ap.add_argument("--gap-s", type=float, default=None,
                    help="seconds between faults (default: spread over the feed)")
    ap.add_argument("--invalid-share", type=float, default=0.005,
                    help="invalid messages per valid event (dead letters)")
    ap.add_argument("--anomalies", type=int, default=5,
                    help="anomalies of each kind injected into each copy of the file")
    ap.add_argument("--scorer", choices=["noop", "model"], default="model",
                    help="INTENT_SCORER of the workers (two model workers keep up with 350/s "
                         "here; noop: the pipeline without the model)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    ap.add_argument("--warmup-events", type=int, default=40_000,
                    help="RSS: a lifetime's first sample judged is the first after it consumed "
                         "this many messages (default: both generations of the default "
                         "INTENT_WINDOW_CACHE_EVENTS can be full)")
    ap.add_argument("--rss-margin", type=float, default=0.15)
    ap.add_argument("--drain-timeout-s", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--recheck", type=Path, default=None, metavar="WORKDIR",
                    help="run nothing: check a finished run again from its workdir (truth.json, "
                         "report.json, the worker logs)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = recheck(args.recheck, GROUP) if args.recheck else asyncio.run(main_async(args))
    summary = {k: v for k, v in report.items() if k not in ("faults", "checks")}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
