"""dead_letter builds records that validate against dead-letter.v1."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.events import dead_letter
from worker.events.deadletter import REASONS
from worker.events.schemas import is_valid, validate

AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make(raw: bytes | None, *, key: bytes | None = b"u1", payload_max: int = 4096, **kw) -> dict:
    args = {
        "reason": "invalid_json",
        "detail": "bad",
        "topic": "clickstream",
        "partition": 0,
        "offset": 7,
        "received_at": AT,
    }
    args.update(kw)
    rec = dead_letter(raw=raw, key=key, payload_max=payload_max, **args)
    validate("dead-letter.v1", rec)
    return rec


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_validates(reason: str) -> None:
    assert make(b"x", reason=reason)["reason"] == reason


def test_utf8_payload_kept_as_text() -> None:
    rec = make('{"q": "café"'.encode())
    assert rec == {
        "reason": "invalid_json",
        "detail": "bad",
        "topic": "clickstream",
        "partition": 0,
        "offset": 7,
        "key": "u1",
        "payload": '{"q": "café"',
        "payload_encoding": "utf-8",
        "payload_bytes": 13,
        "truncated": False,
        "received_at": "2024-05-01T12:00:00.123Z",
    }


def test_binary_payload_as_base64() -> None:
    rec = make(b"\xff\xfe\x00", reason="invalid_utf8")
    assert rec["payload_encoding"] == "base64"
    assert base64.b64decode(rec["payload"]) == b"\xff\xfe\x00"


def test_truncation() -> None:
    rec = make(b"a" * 100, payload_max=10, reason="too_large")
    assert rec["payload"] == "a" * 10
    assert rec["truncated"] is True
    assert rec["payload_bytes"] == 100


def test_truncation_through_a_character_keeps_text() -> None:
    rec = make("aé€".encode(), payload_max=4)  # a(1) é(2) €(3): the cut splits €
    assert rec["payload"] == "aé"
    assert rec["payload_encoding"] == "utf-8"
    assert rec["truncated"] is True


def test_binary_truncated_payload_as_base64() -> None:
    rec = make(b"\xff" * 50, payload_max=8)
    assert base64.b64decode(rec["payload"]) == b"\xff" * 8
    assert rec["truncated"] is True


def test_zero_payload_max() -> None:
    rec = make(b"abc", payload_max=0)
    assert rec["payload"] == "" and rec["truncated"] is True and rec["payload_bytes"] == 3


def test_no_value_and_no_key() -> None:
    rec = make(None, key=None, reason="empty")
    assert rec["payload"] == "" and rec["payload_bytes"] == 0 and rec["truncated"] is False
    assert rec["key"] is None


def test_binary_key_is_decoded_with_replacement() -> None:
    rec = make(b"x", key=b"u\xff1")
    assert rec["key"] == "u\ufffd1"
    assert len(make(b"x", key=b"k" * 5000)["key"]) == 1024


def test_long_detail_is_capped() -> None:
    assert len(make(b"x", detail="d" * 5000)["detail"]) == 1024


def test_received_at_in_other_offset_is_written_in_utc() -> None:
    at = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert make(b"x", received_at=at)["received_at"] == "2024-05-01T12:00:00.000Z"


def test_naive_received_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make(b"x", received_at=datetime(2024, 5, 1))  # noqa: DTZ001


def test_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        make(b"x", reason="bad_vibes")


@settings(max_examples=200, deadline=None)
@given(
    st.none() | st.binary(max_size=300),
    st.none() | st.binary(max_size=40),
    st.integers(min_value=0, max_value=400),
)
def test_random_payloads_always_validate(raw: bytes | None, key: bytes | None, limit: int) -> None:
    rec = dead_letter(
        raw=raw,
        key=key,
        reason="invalid_json",
        detail="x",
        topic="t",
        partition=0,
        offset=0,
        received_at=AT,
        payload_max=limit,
    )
    assert is_valid("dead-letter.v1", rec)
    data = raw or b""
    kept = (
        base64.b64decode(rec["payload"])
        if rec["payload_encoding"] == "base64"
        else rec["payload"].encode()
    )
    assert data.startswith(kept) and len(kept) <= limit
    assert rec["truncated"] == (len(data) > limit)
