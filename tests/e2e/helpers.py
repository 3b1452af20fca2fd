"""Helpers for end-to-end tests: a worker subprocess, synthetic events, topic readers."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.ops.stack import free_port

PRODUCTS = [
    ("p1", "Galaxy S10 smartphone 128GB", "electronics.smartphone", "samsung", 599.0),
    ("p2", "iPhone 11", "electronics.smartphone", "apple", 799.0),
    ("p3", "Noise cancelling headphones", "electronics.audio.headphone", "sony", 249.9),
    ("p4", "Running shoes", "apparel.shoes", "nike", 89.5),
    ("p5", "Coffee machine", "appliances.kitchen.coffee_machine", "delonghi", 329.0),
    ("p6", "Office chair", "furniture.office.chair", "ikea", 149.0),
]
TYPES = ["view"] * 6 + ["search", "add_to_cart", "remove_from_cart", "purchase", "review"]


def make_events(n: int, users: int, *, seed: int = 7,
                start_ms: int = 1_700_000_000_000) -> list[dict]:
    rnd = random.Random(seed)
    events = []
    for i in range(n):
        etype = rnd.choice(TYPES)
        pid, title, cat, brand, price = rnd.choice(PRODUCTS)
        ev: dict = {
            "event_id": f"e-{seed}-{i}",
            "user_id": f"u{rnd.randrange(users)}",
            "event_type": etype,
            "ts": start_ms + i * 1000 + rnd.randrange(-5000, 5000),  # some out of order
            "session_id": f"s{rnd.randrange(users * 2)}",
            "context": {"device": rnd.choice(["desktop", "mobile", "tablet"])},
        }
        if etype == "search":
            ev["query"] = rnd.choice(["red running shoes", "cheap phone", "coffee beans"])
        elif etype == "review":
            ev["review"] = {"rating": rnd.randrange(1, 6), "text": "works fine, fast delivery"}
            ev["product"] = {"id": pid, "title": title}
        else:
            ev["product"] = {"id": pid, "title": title, "category": cat, "brand": brand,
                             "price": price, "currency": "USD"}
        if i % 3 == 0:  # both timestamp forms
            from worker.events import format_ts

            ev["ts"] = format_ts(ev["ts"]).replace("Z", "+00:00")
        events.append(ev)
    return events


def event(eid: str, user: str, ts: int, etype: str = "view", *, pid: str, category: str,
          price: float) -> dict:
    return {"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
            "product": {"id": pid, "title": f"product {pid}", "category": category,
                        "price": price}}


def burst_and_bot(t0: int) -> tuple[list[dict], list[dict]]:
    """A purchase burst (a view, then 7 purchases 30 s apart: ``purchase_velocity``) and a bot
    (20 views 100 ms apart: ``bot_cadence``), from event time ``t0`` (ms)."""
    burst = [event("burst-v", "burst", t0, pid="s1", category="apparel.shoes", price=90.0)]
    burst += [event(f"burst-p{i}", "burst", t0 + 10_000 + i * 30_000, "purchase", pid=f"s{i}",
                    category="apparel.shoes", price=90.0) for i in range(7)]
    bot = [event(f"bot-{i}", "bot", t0 + i * 100, pid=f"b{i}", category="books", price=10.0)
           for i in range(20)]
    return burst, bot


def bad_messages(max_bytes: int) -> list[tuple[bytes, bytes | None, str]]:
    """(key, value, expected reason) for each kind of bad input."""
    good = {"event_id": "x", "user_id": "u1", "event_type": "view", "ts": 1_700_000_000_000}
    cases: list[tuple[bytes | None, str]] = [
        (b"{not json", "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b"\xff\xfe\xfa", "invalid_utf8"),
        (b"x" * (max_bytes + 1), "too_large"),
        (orjson.dumps({**good, "event_type": "teleport"}), "unknown_event_type"),
        (orjson.dumps({**good, "surprise": 1}), "schema_violation"),
        (orjson.dumps({k: v for k, v in good.items() if k != "user_id"}), "schema_violation"),
        (orjson.dumps({**good, "ts": "2024-01-01T00:00:00"}), "schema_violation"),
        (orjson.dumps({**good, "product": {"id": "p", "price": -1}}), "schema_violation"),
        (b"[1, 2, 3]", "schema_violation"),
        (None, "empty"),
    ]
    return [(f"bad-{i}".encode(), v, r) for i, (v, r) in enumerate(cases)]


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """``python -m worker.cli run`` with ``env``; SIGTERM (then kill) on the way out."""
    with module_process("worker.cli", env, log_path, args=("run",)) as proc:
        yield proc


def worker_env(kafka_bootstrap: str, redis_url: str, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {
        "INTENT_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INTENT_REDIS_URL": redis_url,
        "INTENT_APP_ID": f"iw-test-{tag}",
        "INTENT_TOPIC_EVENTS": f"clickstream-{tag}",
        "INTENT_TOPIC_SCORES": f"scores-{tag}",
        "INTENT_TOPIC_ALERTS": f"alerts-{tag}",
        "INTENT_TOPIC_DLQ": f"dlq-{tag}",
        "INTENT_KEY_PREFIX": f"t{tag}",
        "INTENT_WEB_PORT": str(free_port()),
        "INTENT_TOPIC_PARTITIONS": "4",
        "INTENT_BATCH_WAIT_MS": "100",
        "INTENT_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


async def produce(bootstrap: str, topic: str,
                  messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futs = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _from_start(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list:
    """Assign every partition of ``topic`` (waiting for its metadata until ``deadline``) and
    seek to the beginning; the partitions, or [] when the topic never showed up."""
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await asyncio.sleep(0.2)
    if not parts:
        return []
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


def _group_less_consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                            enable_auto_commit=False, group_id=None)


async def read_topic(bootstrap: str, topic: str, *, until, timeout_s: float) -> list[dict]:
    """Read a topic from the start (no group) until ``until(records)`` or the timeout."""
    consumer = _group_less_consumer(bootstrap)
    await consumer.start()
    records: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        await _from_start(consumer, topic, deadline)
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(orjson.loads(m.value) for m in msgs)
        return records
    finally:
        await consumer.stop()


# --- fault and hostile-input tests ---------------------------------------------------------


async def produce_logged(bootstrap: str, topic: str,
                         messages: list[tuple[bytes | None, bytes | None]], *,
                         rate: float | None = None) -> list[tuple[int, int]]:
    """Send ``messages`` in order (``rate``/s when given); return each one's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        start = time.monotonic()
        futs = []
        for i, (k, v) in enumerate(messages):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futs.append(await producer.send(topic, value=v, key=k))
        metas = await asyncio.gather(*futs)
        return [(m.partition, m.offset) for m in metas]
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (0 when none)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            parts = consumer.partitions_for_topic(topic)
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in sorted(parts)}
    finally:
        await consumer.stop()


def covered_ids(records: list[dict]) -> set[str]:
    return {eid for r in records for eid in r["event_ids"]}


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def first_cover_order_violations(records: list[dict],
                                 rank: dict[str, int]) -> list[tuple[str, str, str]]:
    """Per user, the events whose *first* cover came after the first cover of a later event.

    ``rank`` orders each user's events as produced (= partition offset order, since
    messages are keyed by user). Records are in topic order (one partition per user
    key). Re-deliveries after a crash or a rebalance cover earlier events again, which
    is allowed; an event first scored after a later one of the same user is not.
    """
    last: dict[str, tuple[int, str]] = {}
    bad = []
    seen: set[str] = set()
    for r in records:
        for eid in r["event_ids"]:
            if eid in seen:
                continue
            seen.add(eid)
            user = r["user_id"]
            prev = last.get(user)
            if prev is not None and rank[eid] < prev[0]:
                bad.append((user, prev[1], eid))
            if prev is None or rank[eid] > prev[0]:
                last[user] = (rank[eid], eid)
    return bad


async def read_windows(redis_url: str, prefix: str, users: list[str], *, max_events: int,
                       window_seconds: int = 3600) -> dict[str, list[dict]]:
    """Every user's window as the worker's store sees it (an empty append reads)."""
    from worker.settings import load_settings
    from worker.windows import RedisWindowStore

    settings = load_settings(redis_url=redis_url, key_prefix=prefix, window_max_events=max_events,
                             window_seconds=window_seconds)
    store = RedisWindowStore.from_settings(settings)
    try:
        return await store.append({u: [] for u in users})
    finally:
        await store.stop()


async def wait_for(predicate, *, timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(every_s)
    return predicate()


async def read_all(bootstrap: str, topic: str, *, timeout_s: float = 30) -> list[dict]:
    """Every record of ``topic`` now (read from the start up to the end offsets taken first)."""
    consumer = _group_less_consumer(bootstrap)
    await consumer.start()
    records: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        tps = await _from_start(consumer, topic, deadline)
        if not tps:
            return records
        ends = await consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return records
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(orjson.loads(m.value) for m in msgs)
        raise TimeoutError(f"read {len(records)} records of {topic}, "
                           f"not at the end after {timeout_s}s")
    finally:
        await consumer.stop()


async def wait_log(path: Path, text: str, *, timeout_s: float,
                   proc: subprocess.Popen | None = None) -> bool:
    """Wait until ``text`` is in the log at ``path`` (False on timeout or if ``proc`` exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in _read_text(path):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        await asyncio.sleep(0.1)
    return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@contextmanager
def module_process(module: str, env: dict[str, str], log_path: Path,
                   args: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    """``python -m module *args`` with ``env`` (the worker, or test doubles of it)."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(url: str, *, timeout_s: float, proc: subprocess.Popen | None = None) -> int:
    """GET ``url`` (a worker's ``/ready``) until it answers 200, ``proc`` exits or ``timeout_s``
    has passed (one try at least: ``timeout_s=0`` asks once); the last status, 0 while nothing
    listens. Blocking: ``asyncio.to_thread`` it from a test's event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError):
            status = 0
        if status == 200 or time.monotonic() >= deadline or (
                proc is not None and proc.poll() is not None):
            return status
        time.sleep(0.2)
