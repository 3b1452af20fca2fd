"""``intent-worker publish`` against the real (Tansu) broker of the test session: which clock
stamps the records, and what a time-range read of the topic then finds. The tests run the CLI,
which runs its own event loop, so they are sync."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.events.adapters import read_rees46
from worker.kafka.reader import parse_time, read_topic_range

SAMPLE = Path(__file__).resolve().parents[2] / "worker" / "data" / "sample-rees46.csv"


def _publish(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("INTENT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    topic = f"publish-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(main, ["publish", *args, "--topic", topic])
    assert result.exit_code == 0, result.output
    return topic


def _read(kafka_bootstrap: str, topic: str, from_time: str | None = None,
          to_time: str | None = None) -> list:
    async def go() -> list:
        return [r async for r in read_topic_range(
            [kafka_bootstrap], topic, from_ms=parse_time(from_time) if from_time else None,
            to_ms=parse_time(to_time) if to_time else None)]

    return asyncio.run(go())


def test_event_time_stamps_records_with_the_events_ts(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = SAMPLE.read_text().splitlines()
    csv = tmp_path / "part.csv"
    csv.write_text("\n".join(rows[:201]) + "\n")  # header + 200 events, 02:43:37 onwards
    topic = _publish(kafka_bootstrap, monkeypatch, str(csv), "--format", "rees46", "--event-time")

    records = _read(kafka_bootstrap, topic)
    assert len(records) == 200
    ts = {e["event_id"]: e["ts"] for e in read_rees46(csv)}
    for r in records:
        assert r.timestamp_ms == parse_time(ts[orjson.loads(r.value)["event_id"]])
    # the README's replay range selects them by event time
    in_range = _read(kafka_bootstrap, topic, "2019-10-01T02:00:00Z", "2019-10-01T03:00:00Z")
    assert len(in_range) == 200


def test_without_event_time_records_carry_the_time_of_publishing(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = time.time() * 1000
    topic = _publish(kafka_bootstrap, monkeypatch, str(SAMPLE), "--format", "rees46")
    records = _read(kafka_bootstrap, topic)
    assert len(records) == 3000
    assert all(before - 1000 <= r.timestamp_ms <= time.time() * 1000 + 1000 for r in records)
    # so a range in event time finds nothing
    assert _read(kafka_bootstrap, topic, "2019-10-01T02:00:00Z", "2019-10-01T03:00:00Z") == []


def test_lines_without_a_valid_ts_keep_the_time_of_publishing(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b'{"user_id": "u1", "ts": 1569897817000}\n'
                      b'{"user_id": "u1", "ts": "2019-10-01T02:43:38Z"}\n'
                      b'{"user_id": "u2", "ts": "not a time"}\n'
                      b'not json at all\n')
    before = time.time() * 1000
    monkeypatch.setenv("INTENT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    topic = f"publish-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(main, ["publish", str(lines), "--format", "jsonl", "--event-time",
                                       "--topic", topic])
    assert result.exit_code == 0, result.output
    assert "2 messages had no valid ts" in result.output
    stamped = {r.value: r.timestamp_ms for r in _read(kafka_bootstrap, topic)}
    assert stamped[b'{"user_id": "u1", "ts": 1569897817000}'] == 1_569_897_817_000
    assert stamped[b'{"user_id": "u1", "ts": "2019-10-01T02:43:38Z"}'] == 1_569_897_818_000
    assert stamped[b'{"user_id": "u2", "ts": "not a time"}'] >= before - 1000
    assert stamped[b"not json at all"] >= before - 1000
