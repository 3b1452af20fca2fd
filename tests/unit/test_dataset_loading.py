"""load_events: validation as in the worker, rejected lines by reason, order, fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from worker.dataset.loading import data_fingerprint, events_fingerprint, load_events
from worker.errors import ConfigError

HEADER = ("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
          "user_session")
HEATER = "3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20"
REES46 = "\n".join([
    HEADER,
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s1",
    f"2019-10-01 00:00:01 UTC,view,{HEATER},554748717,s2",
    f"2019-10-01 00:00:01 UTC,cart,{HEATER},554748717,s2",
    f"2019-10-01 00:00:05 UTC,purchase,{HEATER},554748717,s2",
]) + "\n"


def good(eid: str, ts: str, user: str = "u1", kind: str = "view") -> bytes:
    return orjson.dumps({"event_id": eid, "user_id": user, "event_type": kind, "ts": ts})


def test_rees46(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(REES46, encoding="utf-8")
    result = load_events(path, "rees46")
    # sorted by (ts, event_id): the view and the cart of second 1 tie on ts
    assert [e["event_type"] for e in result.events][::3] == ["view", "purchase"]
    keys = [(e["ts"], e["event_id"]) for e in result.events]
    assert keys == sorted(keys)
    assert all(isinstance(e["ts"], int) for e in result.events)
    view = next(e for e in result.events if e["user_id"] == "554748717")
    assert view["product"] == {"id": "3900821", "price": 33.2, "brand": "aqua",
                                           "category": "appliances.environment.water_heater"}
    assert result.rejected == {} and result.lines == 4 and result.users == 2
    assert result.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.summary()["format"] == "rees46"


def test_jsonl_rejects_like_the_worker_and_sorts(tmp_path: Path) -> None:
    lines = [
        good("b", "2019-10-01T00:00:02Z"),
        b"{not json",
        orjson.dumps({"event_id": "x", "user_id": "u", "event_type": "teleport",
                      "ts": "2019-10-01T00:00:00Z"}),
        orjson.dumps({"event_id": "y", "user_id": "u", "event_type": "view"}),  # no ts
        good("a", "2019-10-01T00:00:02Z"),
        good("c", "2019-10-01T02:00:00+02:00"),  # = 00:00:00Z
        good("a", "2019-10-01T00:00:09Z"),  # same user, same event id: a redelivery
        b"\xff\xfe",
        b"   ",
    ]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = load_events(path, "jsonl")
    assert [e["event_id"] for e in result.events] == ["c", "a", "b"]
    assert result.rejected == {"invalid_json": 1, "unknown_event_type": 1,
                               "schema_violation": 1, "invalid_utf8": 1}
    assert result.duplicates == 1
    assert result.lines == 8  # blank lines are not read
    assert result.events[1]["ts"] == 1_569_888_002_000


def test_too_large_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(good("a", "2019-10-01T00:00:02Z") + b"\n")
    assert load_events(path, "jsonl", max_event_bytes=10).rejected == {"too_large": 1}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_events(tmp_path / "missing.csv", "rees46")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError):
        load_events(tmp_path / "f", "parquet")  # type: ignore[arg-type]


def test_fingerprints(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert data_fingerprint(path) == ("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
                                      "10ff61f20015ad")
    events = [{"ts": 1, "event_id": "a", "user_id": "u", "event_type": "view"}]
    reordered = [{"user_id": "u", "event_type": "view", "event_id": "a", "ts": 1}]
    assert events_fingerprint(events) == events_fingerprint(reordered)
    assert events_fingerprint(events) != events_fingerprint(events * 2)
