"""Hostile input: 1,000+ bad messages among valid events, twice, against one worker process.

Every bad message must reach the dead-letter topic once, with its reason, key and size;
every valid event must be scored once; the worker must neither crash nor restart, and its
memory must not grow with the number of bad messages it has seen.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from tests.e2e.helpers import (
    covered_ids,
    make_events,
    produce_logged,
    read_topic,
    rss_bytes,
    wait_log,
    worker_env,
    worker_process,
)
from tests.e2e.hostile import Bad, hostile_corpus, odd_valid_events
from worker.errors import BadEvent
from worker.events import parse_event, validate

MAX_BYTES = 65_536
PAYLOAD_MAX = 4096
KINDS = [
    "invalid utf-8",
    "nested",
    "over its maxLength",
    "payload over the limit",
    "NaN/Infinity",
    "wrong type",
    "missing fields",
    "unknown field",
    "epoch ms before 2000",
    "epoch ms after 2100",
    "RFC 3339 time past",
    "RFC 3339 time future",
    "negative price",
    "unknown event type",
    "not a JSON object",
]
MB = 1024 * 1024


def test_corpus_is_large_varied_and_its_reasons_are_what_the_parser_says():
    corpus = hostile_corpus(MAX_BYTES)
    assert len(corpus) >= 1000
    for kind in KINDS:
        assert sum(kind in b.kind for b in corpus) >= 5, kind
    assert sum(b.key is None for b in corpus) >= 50
    for b in corpus:
        try:
            parse_event(b.value, max_bytes=MAX_BYTES)
        except BadEvent as exc:
            assert exc.reason == b.reason, (b.kind, exc.detail, (b.value or b"")[:200])
        else:
            raise AssertionError(f"accepted as valid: {b.kind}: {(b.value or b'')[:200]!r}")
    for ev in odd_valid_events():
        parse_event(orjson.dumps(ev), max_bytes=MAX_BYTES)


def interleave(
    valid: list[dict], bad: tuple[Bad, ...]
) -> tuple[list[tuple[bytes | None, bytes | None]], list]:
    """Messages with bad ones spread evenly among valid ones; ``origin[i]`` says what message i is.

    Every 25th valid event goes without a key, every 30th with another user's key.
    """
    messages: list[tuple[bytes | None, bytes | None]] = []
    origin: list = []
    step = max(1, len(valid) // max(1, len(bad)))
    bi = 0
    for i, ev in enumerate(valid):
        key = None if i % 25 == 0 else (b"someone-else" if i % 30 == 0 else ev["user_id"].encode())
        messages.append((key, orjson.dumps(ev)))
        origin.append(ev)
        if i % step == 0 and bi < len(bad):
            messages.append((bad[bi].key, bad[bi].value))
            origin.append(bad[bi])
            bi += 1
    for b in bad[bi:]:
        messages.append((b.key, b.value))
        origin.append(b)
    return messages, origin


async def test_hostile_corpus_is_dead_lettered_and_valid_events_are_scored(
    kafka_bootstrap, redis_url, tmp_path
):
    env = worker_env(
        kafka_bootstrap,
        redis_url,
        INTENT_SCORER="noop",
        INTENT_MAX_EVENT_BYTES=str(MAX_BYTES),
        INTENT_DLQ_PAYLOAD_BYTES=str(PAYLOAD_MAX),
        INTENT_BATCH_MAX="128",
    )
    topic, scores_topic, dlq_topic = (
        env["INTENT_TOPIC_EVENTS"],
        env["INTENT_TOPIC_SCORES"],
        env["INTENT_TOPIC_DLQ"],
    )
    corpus = await asyncio.get_running_loop().run_in_executor(None, hostile_corpus, MAX_BYTES)
    warmup = make_events(300, users=30, seed=30)
    rounds = [
        make_events(1500, users=60, seed=31) + odd_valid_events(),
        make_events(1500, users=60, seed=32),
    ]
    log_path = tmp_path / "worker.log"
    sent: dict[tuple[int, int], object] = {}
    rss = []
    with worker_process(env, log_path) as proc:
        assert await wait_log(log_path, "[^Worker]: Ready", timeout_s=60, proc=proc), (
            log_path.read_text()[-3000:]
        )
        await produce_logged(
            kafka_bootstrap, topic, [(e["user_id"].encode(), orjson.dumps(e)) for e in warmup]
        )
        await read_topic(
            kafka_bootstrap,
            scores_topic,
            timeout_s=60,
            until=lambda rs: covered_ids(rs) >= {e["event_id"] for e in warmup},
        )
        rss.append(rss_bytes(proc.pid))
        valid_ids = {e["event_id"] for e in warmup}
        for n, valid in enumerate(rounds, start=1):
            messages, origin = interleave(valid, corpus)
            offsets = await produce_logged(kafka_bootstrap, topic, messages)
            sent.update(zip(offsets, origin, strict=True))
            valid_ids |= {e["event_id"] for e in valid}
            scores = await read_topic(
                kafka_bootstrap,
                scores_topic,
                timeout_s=120,
                until=lambda rs, want=valid_ids: covered_ids(rs) >= want,
            )
            dlq = await read_topic(
                kafka_bootstrap,
                dlq_topic,
                timeout_s=60,
                until=lambda rs, n=n: len(rs) >= n * len(corpus),
            )
            rss.append(rss_bytes(proc.pid))
        alive = proc.poll() is None
        pid = proc.pid
    log = log_path.read_text(errors="replace")
    assert alive, log[-3000:]
    assert log.count("[^Worker]: Ready") == 1 and f"[{pid}]" in log  # one process, started once
    assert "Traceback" not in log and "Crashed" not in log, log[-3000:]
    # raw event text never reaches the log (payloads only travel to the DLQ topic)
    from tests.e2e.helpers import PRODUCTS

    leaked = [title for _, title, *_ in PRODUCTS if title in log]
    leaked += [e["event_id"] for e in rounds[1][:200] if f'"{e["event_id"]}"' in log]
    assert not leaked, leaked[:5]

    counts = Counter(eid for r in scores for eid in r["event_ids"])
    assert set(counts) == valid_ids, f"not scored: {sorted(valid_ids - set(counts))[:10]}"
    assert max(counts.values()) == 1

    expected = {pos: b for pos, b in sent.items() if isinstance(b, Bad)}
    got: dict[tuple[int, int], dict] = {}
    for record in dlq:
        validate("dead-letter.v1", record)
        assert record["topic"] == topic
        pos = (record["partition"], record["offset"])
        assert pos not in got, f"dead-lettered twice: {pos}"
        assert pos in expected, (
            f"a valid event was dead-lettered: {record['reason']} {record['detail']}"
        )
        got[pos] = record
    assert set(got) == set(expected), (
        f"{len(set(expected) - set(got))} bad messages never reached the DLQ"
    )
    wrong = []
    for pos, b in expected.items():
        record = got[pos]
        raw = b.value or b""
        if record["reason"] != b.reason:
            wrong.append((b.kind, b.reason, record["reason"], record["detail"]))
        assert record["key"] == (None if b.key is None else b.key.decode())
        assert record["payload_bytes"] == len(raw)
        assert record["truncated"] == (len(raw) > PAYLOAD_MAX)
        assert record["detail"]
    assert not wrong, wrong[:10]

    before, after_1, after_2 = rss
    corpus_mb = sum(len(b.value or b"") for b in corpus) / MB
    print(
        f"\nhostile: {len(corpus)} bad messages x {len(rounds)} rounds ({corpus_mb:.1f} MB "
        f"each), {len(valid_ids)} valid events, reasons {dict(Counter(b.reason for b in corpus))}; "
        f"worker RSS {before / MB:.0f} MB after warm-up, {after_1 / MB:.0f} MB after round 1, "
        f"{after_2 / MB:.0f} MB after round 2"
    )
    # bounded: the second pass over the same hostile traffic must not grow memory much
    assert after_2 - after_1 < 40 * MB, rss
    assert after_2 - before < 150 * MB, rss
