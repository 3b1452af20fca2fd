"""File adapters: REES46 CSV -> click events, JSON Lines -> raw lines, Kafka keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.events import parse_event
from worker.events.adapters import read_jsonl, read_rees46, user_key
from worker.events.schemas import validate

HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
)
ROWS = (
    "2019-10-01 00:00:00 UTC,view,3900821,205301,appliances.kettle,aqua,33.20,554748717,9333dfbd\n"
    "2019-10-01 00:00:01 UTC,view,17200506,205302,,,543.10,519107250,566511c2\n"
    "2019-10-01 00:00:01 UTC,view,17200506,205302,,,543.10,519107250,566511c2\n"
    "2019-10-01 00:00:02 UTC,cart,1004833,205303,electronics.phone,acme,174.76,5377,97a54368\n"
    "2019-10-01 00:00:03 UTC,remove_from_cart,1004833,205303,electronics.phone,acme,174.76,5377,\n"
    "2019-10-01 00:00:04 UTC,purchase,1004833,205303,electronics.phone,acme,174.76,5377,97a54368\n"
    "2019-10-01 00:00:04 UTC,view,17200506,205302,,,543.10,519107250,566511c2\n"
)
REAL = Path("/work/shared/data/rees46/events-dev.csv")


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rees46_rows_become_click_events(tmp_path: Path) -> None:
    events = list(read_rees46(write(tmp_path, HEADER + ROWS)))
    assert len(events) == 7
    first = events[0]
    assert first == {
        "event_id": first["event_id"],
        "user_id": "554748717",
        "event_type": "view",
        "ts": "2019-10-01T00:00:00.000Z",
        "session_id": "9333dfbd",
        "product": {
            "id": "3900821",
            "category": "appliances.kettle",
            "brand": "aqua",
            "price": 33.2,
        },
    }
    assert events[1]["product"] == {"id": "17200506", "price": 543.1}  # empty brand, category
    assert [e["event_type"] for e in events[3:6]] == ["add_to_cart", "remove_from_cart", "purchase"]
    assert "session_id" not in events[4]
    for event in events:
        validate("click-event.v1", event)


def test_rees46_events_parse(tmp_path: Path) -> None:
    import orjson

    for event in read_rees46(write(tmp_path, HEADER + ROWS)):
        assert parse_event(orjson.dumps(event), max_bytes=65_536)["ts"] >= 1_569_888_000_000


def test_rees46_ids_are_distinct_and_stable(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + ROWS)
    ids = [e["event_id"] for e in read_rees46(path)]
    assert len(set(ids)) == len(ids)  # the duplicate row gets its own id
    assert ids == [e["event_id"] for e in read_rees46(path)]
    # Same rows in another file (other name, columns reordered) give the same ids.
    cols = HEADER.strip().split(",")
    order = list(reversed(range(len(cols))))
    lines = [",".join(line.split(",")[i] for i in order) for line in (HEADER + ROWS).splitlines()]
    other = write(tmp_path, "\n".join(lines) + "\n", "other.csv")
    assert [e["event_id"] for e in read_rees46(other)] == ids


def test_rees46_unknown_event_type(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + ROWS + "2019-10-01 00:00:05 UTC,wishlist,1,2,,,1.0,3,s\n")
    with pytest.raises(ConfigError, match=r"events\.csv:9: unknown event_type 'wishlist'"):
        list(read_rees46(path))


def test_rees46_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "event_time,event_type,product_id,price,user_id\n")
    with pytest.raises(
        ConfigError, match="missing columns: category_id, category_code, brand, user_session"
    ):
        list(read_rees46(path))


def test_rees46_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty"):
        list(read_rees46(write(tmp_path, "")))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2019-10-01 00:00:05,view,1,2,,,1.0,3,s", "event_time"),
        ("2019-13-01 00:00:05 UTC,view,1,2,,,1.0,3,s", "event_time"),
        ("2019-10-01 00:00:05 UTC,view,1,2,,,abc,3,s", "price"),
        ("2019-10-01 00:00:05 UTC,view,1,2,,,nan,3,s", "price"),
        ("2019-10-01 00:00:05 UTC,view,1,2,,,1.0,,s", "user_id"),
        ("2019-10-01 00:00:05 UTC,view,1,2", "columns"),
        ("2019-09-30 23:59:59 UTC,view,1,2,,,1.0,3,s", "order"),
    ],
)
def test_rees46_bad_rows(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, HEADER + ROWS + row + "\n")
    with pytest.raises(ConfigError, match=message):
        list(read_rees46(path))


def test_rees46_streams(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + ROWS + "2019-10-01 00:00:05 UTC,wishlist,1,2,,,1.0,3,s\n")
    events = read_rees46(path)
    assert next(events)["user_id"] == "554748717"  # rows before a bad one still flow


@pytest.mark.skipif(not REAL.is_file(), reason="shared REES46 sample not present")
def test_rees46_real_sample() -> None:
    events = list(read_rees46(REAL))
    assert len(events) == 13_846
    assert len({e["event_id"] for e in events}) == 13_846
    for event in events[:200]:
        validate("click-event.v1", event)


def test_jsonl_yields_raw_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"user_id": "u1"}\n\n   \n{broken\r\n\xff\xfe\n{"user_id": "u2"}')
    assert list(read_jsonl(path)) == [
        b'{"user_id": "u1"}',
        b"{broken",
        b"\xff\xfe",
        b'{"user_id": "u2"}',
    ]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b'{"user_id": "u1", "event_type": "view"}', b"u1"),
        ('{"user_id": "ü"}'.encode(), "ü".encode()),
        ({"user_id": "u2"}, b"u2"),
        (b'{"user_id": 5}', None),
        (b'{"event_id": "e"}', None),
        (b"[1]", None),
        (b"{broken", None),
        (b"\xff", None),
        (b"", None),
        (None, None),
        ({"user_id": "\ud800"}, None),
    ],
)
def test_user_key(value: object, key: bytes | None) -> None:
    assert user_key(value) == key
