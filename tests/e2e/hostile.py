"""A corpus of hostile messages, each with the dead-letter reason the worker must give it.

Hand-made cases cover each kind named in issue 6 once or a few times, at the edges;
hypothesis strategies add many more of each kind (derandomized, no example database;
built once per process and cached, so every test sees the same corpus). Every expected
reason is fixed by construction here and checked against ``parse_event`` in-process by
``tests/e2e/test_hostile_input.py``, so a mismatch names the corpus entry, not a worker
mystery.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from worker.events.parse import EVENT_TYPES, TS_MAX_MS, TS_MIN_MS
from worker.events.schemas import load_schema

__all__ = ["Bad", "hostile_corpus", "odd_valid_events"]

BASE_TS = 1_700_000_000_000


@functools.cache
def known_fields() -> frozenset[str]:
    """The click event's top-level fields, from its schema."""
    return frozenset(load_schema("click-event.v1")["properties"])


@dataclass(frozen=True, slots=True)
class Bad:
    key: bytes | None
    value: bytes | None
    reason: str  # the dead-letter reason the worker must give
    kind: str  # what makes it bad (for failure messages and the summary)


def _event(i: int, **fields: object) -> dict:
    ev: dict = {
        "event_id": f"bad-{i}",
        "user_id": f"hu{i % 50}",
        "event_type": "view",
        "ts": BASE_TS + i,
        "product": {"id": "p1", "title": "Phone", "price": 10.0, "currency": "USD"},
        "context": {"device": "mobile"},
    }
    ev.update(fields)
    return ev


def _nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


def handmade(max_bytes: int) -> list[Bad]:
    """Edge cases of each kind, written out."""
    good = orjson.dumps(_event(0))
    cases: list[tuple[bytes | None, str, str]] = [
        (None, "empty", "null value"),
        (b"", "empty", "empty value"),
        (b"\xff", "invalid_utf8", "invalid utf-8"),
        (b"\xc3\x28", "invalid_utf8", "invalid utf-8"),
        (b"\xed\xa0\x80", "invalid_utf8", "utf-8 encoded surrogate"),
        (b"\xf4\x90\x80\x80", "invalid_utf8", "code point above U+10FFFF"),
        (b"\xc0\xaf", "invalid_utf8", "overlong utf-8"),
        (good.replace(b"Phone", b"Ph\xffone"), "invalid_utf8", "invalid utf-8 inside a string"),
        (good[:-3] + b"\xe2\x82", "invalid_utf8", "multi-byte char cut off"),
        (b"\xef\xbb\xbf" + good, "invalid_json", "byte order mark"),
        (b"{not json", "invalid_json", "broken json"),
        (good[: len(good) // 2], "invalid_json", "truncated json"),
        (good + b"garbage", "invalid_json", "trailing garbage"),
        (good + good, "invalid_json", "two documents"),
        (b"   ", "invalid_json", "whitespace only"),
        (good.replace(b"10.0", b"NaN"), "invalid_json", "NaN"),
        (good.replace(b"10.0", b"Infinity"), "invalid_json", "Infinity"),
        (good.replace(b"10.0", b"-Infinity"), "invalid_json", "-Infinity"),
        (good.replace(b"10.0", b"1e400"), "invalid_json", "number overflows to infinity"),
        (good.replace(b'"bad-0"', b'"\\ud800"'), "invalid_json", "lone surrogate escape"),
        (good.replace(b'"bad-0"', b'"a\x01b"'), "invalid_json", "raw control character"),
        (good.replace(b'"bad-0"', b"'bad-0'"), "invalid_json", "single quotes"),
        (b"[" * 1025 + b"]" * 1025, "invalid_json", "arrays nested 1025 deep"),
        (_nested(2000), "invalid_json", "objects nested 2000 deep"),
        (_nested(256), "schema_violation", "objects nested 256 deep"),
        (_nested(1000), "schema_violation", "objects nested 1000 deep"),
        (good[:-1] + b',"context":' + _nested(700) + b"}", "schema_violation", "deep context"),
        (b"[1, 2, 3]", "schema_violation", "array"),
        (b'"a string"', "schema_violation", "string"),
        (b"42", "schema_violation", "number"),
        (b"null", "schema_violation", "json null"),
        (b"true", "schema_violation", "boolean"),
        (b"{}", "schema_violation", "empty object"),
        (b"x" * (max_bytes + 1), "too_large", "one byte over the limit"),
        (b"{" + b" " * (max_bytes * 4) + b"}", "too_large", "huge whitespace payload"),
        (orjson.dumps(_event(1, query="q" * (max_bytes * 8))), "too_large", "huge string"),
        (b"\xff" * (max_bytes * 2), "too_large", "huge invalid utf-8"),
        (orjson.dumps(_event(2, event_type="teleport")), "unknown_event_type", "unknown type"),
        (orjson.dumps(_event(3, event_type="")), "unknown_event_type", "empty type"),
        (orjson.dumps(_event(4, event_type="VIEW")), "unknown_event_type", "type in capitals"),
        (orjson.dumps(_event(5, event_type="view ")), "unknown_event_type", "type with a space"),
        (orjson.dumps(_event(6, event_type="x" * 5000)), "unknown_event_type", "long type"),
        (orjson.dumps(_event(7, event_type=None)), "schema_violation", "null type"),
        (orjson.dumps(_event(8, event_type=["view"])), "schema_violation", "type in a list"),
        (orjson.dumps(_event(9, ts=TS_MIN_MS - 1)), "schema_violation", "ts 1 ms before 2000"),
        (orjson.dumps(_event(10, ts=TS_MAX_MS + 1)), "schema_violation", "ts 1 ms after 2100"),
        (orjson.dumps(_event(11, ts=0)), "schema_violation", "ts 0"),
        (orjson.dumps(_event(12, ts=-BASE_TS)), "schema_violation", "negative ts"),
        (orjson.dumps(_event(13, ts=2**63 - 1)), "schema_violation", "ts int64 max"),
        (orjson.dumps(_event(14, ts=BASE_TS // 1000)), "schema_violation", "ts in seconds"),
        (orjson.dumps(_event(15, ts="1970-01-01T00:00:00Z")), "invalid_timestamp", "ts 1970"),
        (orjson.dumps(_event(16, ts="0001-01-01T00:00:00Z")), "invalid_timestamp", "ts year 1"),
        (orjson.dumps(_event(17, ts="0000-01-01T00:00:00Z")), "invalid_timestamp", "ts year 0"),
        (orjson.dumps(_event(18, ts="9999-12-31T23:59:59Z")), "invalid_timestamp", "ts year 9999"),
        (
            orjson.dumps(_event(19, ts="2100-01-01T00:00:00.001Z")),
            "invalid_timestamp",
            "ts just after 2100",
        ),
        (
            orjson.dumps(_event(20, ts="2024-02-30T00:00:00Z")),
            "invalid_timestamp",
            "ts February 30",
        ),
        (
            orjson.dumps(_event(21, ts="2024-01-01T00:00:00")),
            "schema_violation",
            "ts without offset",
        ),
        (orjson.dumps(_event(22, ts=1.5e12 + 0.5)), "schema_violation", "fractional ts"),
        (orjson.dumps(_event(23, ts=True)), "schema_violation", "boolean ts"),
        (
            orjson.dumps(_event(24, product={"id": "p", "price": -1})),
            "schema_violation",
            "negative price",
        ),
        (
            orjson.dumps(_event(25, product={"id": "p", "price": -1e-9})),
            "schema_violation",
            "tiny negative price",
        ),
        (
            orjson.dumps(_event(26, product={"id": "p", "price": 1e9 + 1})),
            "schema_violation",
            "price too high",
        ),
        (
            orjson.dumps(_event(27, product={"id": "p", "price": "10"})),
            "schema_violation",
            "price as string",
        ),
        (orjson.dumps(_event(28, surprise=1)), "schema_violation", "unknown field"),
        (
            orjson.dumps(_event(29, product={"id": "p", "colour": "red"})),
            "schema_violation",
            "unknown product field",
        ),
        (
            orjson.dumps(_event(30, context={"device": "toaster"})),
            "schema_violation",
            "unknown device",
        ),
        (orjson.dumps(_event(31, user_id="")), "schema_violation", "empty user id"),
        (orjson.dumps(_event(32, user_id="u" * 129)), "schema_violation", "user id too long"),
        (orjson.dumps(_event(33, user_id=42)), "schema_violation", "numeric user id"),
        (orjson.dumps(_event(34, user_id=None)), "schema_violation", "null user id"),
        (orjson.dumps(_event(35, session_id=None)), "schema_violation", "null optional field"),
        (orjson.dumps(_event(36, query="q" * 1025)), "schema_violation", "query too long"),
        (
            orjson.dumps(_event(37, event_type="review", review={})),
            "schema_violation",
            "empty review",
        ),
        (
            orjson.dumps(_event(38, event_type="purchase", product=None)),
            "schema_violation",
            "null product",
        ),
        (
            orjson.dumps(
                {k: v for k, v in _event(39, event_type="purchase").items() if k != "product"}
            ),
            "schema_violation",
            "purchase without product",
        ),
        (
            orjson.dumps({k: v for k, v in _event(40).items() if k != "event_id"}),
            "schema_violation",
            "missing event_id",
        ),
        (orjson.dumps({"event_type": "view"}), "schema_violation", "only event_type"),
    ]
    out = []
    for i, (value, reason, kind) in enumerate(cases):
        key = None if i % 7 == 3 else f"bad-h{i}".encode()  # some null keys among them
        out.append(Bad(key, value, reason, kind))
    return out


# --- generated --------------------------------------------------------------------------

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalar,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)
_not_str = _json.filter(lambda v: not isinstance(v, str))
_not_obj = _json.filter(lambda v: not isinstance(v, dict))
_not_num = _json.filter(lambda v: isinstance(v, bool) or not isinstance(v, int | float))


def _wrong_type() -> st.SearchStrategy[tuple[bytes, str, str]]:
    field_strategies = {
        "event_id": _not_str,
        "user_id": _not_str,
        "session_id": _not_str,
        "query": _not_str,
        "event_type": _not_str,
        "product": _not_obj,
        "review": _not_obj,
        "context": _not_obj,
    }

    @st.composite
    def build(draw):
        i = draw(st.integers(0, 10**6))
        name = draw(st.sampled_from(sorted(field_strategies) + ["price", "rating", "ts"]))
        if name == "price":
            ev = _event(i, product={"id": "p", "price": draw(_not_num)})
        elif name == "rating":
            ev = _event(i, event_type="review", review={"rating": draw(_not_num)})
        elif name == "ts":
            bad_ts = draw(
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.lists(_scalar, max_size=2),
                    st.floats(allow_nan=False, allow_infinity=False).filter(
                        lambda f: not f.is_integer()
                    ),
                )
            )
            ev = _event(i, ts=bad_ts)
        else:
            ev = _event(i, **{name: draw(field_strategies[name])})
        return orjson.dumps(ev), "schema_violation", f"wrong type of {name}"

    return build()


@st.composite
def _invalid_utf8(draw):
    junk = draw(st.binary(min_size=1, max_size=16).filter(_not_utf8))
    base = orjson.dumps(_event(draw(st.integers(0, 10**6))))
    at = draw(st.integers(1, len(base) - 1))
    return base[:at] + junk + base[at:], "invalid_utf8", "invalid utf-8 bytes inserted"


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def _missing_fields(draw):
    ev = _event(draw(st.integers(0, 10**6)))
    drop = draw(st.sets(st.sampled_from(["event_id", "user_id", "event_type", "ts"]), min_size=1))
    return (
        orjson.dumps({k: v for k, v in ev.items() if k not in drop}),
        "schema_violation",
        "missing fields",
    )


@st.composite
def _unknown_fields(draw):
    ev = _event(draw(st.integers(0, 10**6)))
    name = draw(st.text(min_size=0, max_size=30).filter(lambda s: s not in known_fields()))
    where = draw(st.sampled_from(["top", "product", "context"]))
    target = ev if where == "top" else ev[where]
    if where == "product" and name in {"id", "title", "category", "brand", "price", "currency"}:
        name += "_x"
    if where == "context" and name in {"device", "channel", "country", "referrer"}:
        name += "_x"
    target[name] = draw(_json)
    return orjson.dumps(ev), "schema_violation", f"unknown field in {where}"


@st.composite
def _unknown_event_type(draw):
    etype = draw(st.text(max_size=40).filter(lambda s: s not in EVENT_TYPES))
    return (
        orjson.dumps(_event(draw(st.integers(0, 10**6)), event_type=etype)),
        "unknown_event_type",
        "unknown event type",
    )


@st.composite
def _far_timestamp(draw):
    i = draw(st.integers(0, 10**6))
    form = draw(st.sampled_from(["ms-low", "ms-high", "rfc-past", "rfc-future"]))
    if form == "ms-low":
        return (
            orjson.dumps(_event(i, ts=draw(st.integers(-(2**63), TS_MIN_MS - 1)))),
            "schema_violation",
            "epoch ms before 2000",
        )
    if form == "ms-high":
        return (
            orjson.dumps(_event(i, ts=draw(st.integers(TS_MAX_MS + 1, 2**64 - 1)))),
            "schema_violation",
            "epoch ms after 2100",
        )
    # hypothesis takes naive bounds; the time is made UTC ("Z") below
    if form == "rfc-past":
        lo, hi = datetime(1, 1, 1), datetime(1999, 12, 31, 23, 59, 59)  # noqa: DTZ001
    else:
        lo, hi = datetime(2100, 1, 1, 0, 0, 1), datetime(9999, 12, 31)  # noqa: DTZ001
    dt = draw(st.datetimes(min_value=lo, max_value=hi))
    text = dt.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    if len(text) != 20:  # strftime does not pad years below 1000 on every platform
        text = f"{dt.year:04d}" + text[text.index("-") :]
    return orjson.dumps(_event(i, ts=text)), "invalid_timestamp", f"RFC 3339 time {form[4:]}"


@st.composite
def _negative_price(draw):
    price = draw(
        st.one_of(
            st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
            st.integers(-(2**63), -1),
        )
    )
    return (
        orjson.dumps(_event(draw(st.integers(0, 10**6)), product={"id": "p", "price": price})),
        "schema_violation",
        "negative price",
    )


@st.composite
def _non_finite(draw):
    word = draw(
        st.sampled_from(
            [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"-inf", b"1e999", b"-1e999"]
        )
    )
    field = draw(st.sampled_from([b'"price":10.0', b'"ts":' + str(BASE_TS).encode()]))
    base = orjson.dumps(_event(draw(st.integers(0, 10**6)), ts=BASE_TS))
    return base.replace(field, field.split(b":")[0] + b":" + word), "invalid_json", "NaN/Infinity"


@st.composite
def _deep(draw):
    depth = draw(st.integers(256, 3000))
    opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]")]))
    body = opener * depth + b"1" + closer * depth
    where = draw(st.sampled_from(["top", "context"]))
    if where == "context":
        base = orjson.dumps(_event(draw(st.integers(0, 10**6))))
        body = base[:-1] + b',"x":' + body + b"}"
    reason = "invalid_json" if depth + (where == "context") > 1024 else "schema_violation"
    return body, reason, f"nested {depth} deep ({where})"


@st.composite
def _long_strings(draw, max_bytes: int):
    field, limit = draw(
        st.sampled_from(
            [
                ("query", 1024),
                ("event_id", 128),
                ("session_id", 128),
                ("title", 512),
                ("text", 4096),
            ]
        )
    )
    n = draw(st.integers(limit + 1, max_bytes - 400))
    ch = draw(st.sampled_from(["a", "é", "€", "😀"]))
    n = min(n, (max_bytes - 400) // len(ch.encode()))
    if n <= limit:
        n = limit + 1
    text = ch * n
    i = draw(st.integers(0, 10**6))
    if field == "title":
        ev = _event(i, product={"id": "p", "title": text})
    elif field == "text":
        ev = _event(i, event_type="review", review={"text": text})
    else:
        ev = _event(i, **{field: text})
    return orjson.dumps(ev), "schema_violation", f"{field} over its maxLength"


@st.composite
def _too_large(draw, max_bytes: int):
    size = draw(st.integers(max_bytes + 1, max_bytes * 4))
    kind = draw(st.sampled_from(["json", "binary"]))
    if kind == "json":
        value = orjson.dumps(_event(draw(st.integers(0, 10**6)), query="q" * size))
    else:
        value = draw(st.binary(min_size=16, max_size=16)) * (size // 16 + 1)
    return value, "too_large", f"{kind} payload over the limit"


@st.composite
def _not_an_object(draw):
    doc = draw(_json.filter(lambda v: not isinstance(v, dict)))
    return orjson.dumps(doc), "schema_violation", "not a JSON object"


def _generated_strategy(max_bytes: int) -> st.SearchStrategy[tuple[bytes, str, str]]:
    return st.one_of(
        _wrong_type(),
        _invalid_utf8(),
        _missing_fields(),
        _unknown_fields(),
        _unknown_event_type(),
        _far_timestamp(),
        _negative_price(),
        _non_finite(),
        _deep(),
        _long_strings(max_bytes),
        _too_large(max_bytes),
        _not_an_object(),
    )


def generated(max_bytes: int, n: int) -> list[Bad]:
    """``n`` hypothesis-generated bad messages (deterministic), a tenth of them with a null key."""
    found: list[tuple[bytes, str, str]] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(_generated_strategy(max_bytes))
    def collect(case: tuple[bytes, str, str]) -> None:
        found.append(case)

    collect()
    return [
        Bad(None if i % 10 == 0 else f"bad-g{i}".encode(), v, r, k)
        for i, (v, r, k) in enumerate(found)
    ]


@functools.cache
def hostile_corpus(max_bytes: int, *, n_generated: int = 950) -> tuple[Bad, ...]:
    return tuple(handmade(max_bytes) + generated(max_bytes, n_generated))


def odd_valid_events(n: int = 40) -> list[dict]:
    """Valid events at the edges of the schema: they must be scored, not dead-lettered."""
    specials = ["{brace}", "%7B", "ü-ñ", "用户", "😀", "a" * 128, "u:1", "*", "\\", " ", "\x00"]
    out = []
    for i in range(n):
        user = f"odd-{specials[i % len(specials)]}"[:128]
        ev: dict = {
            "event_id": f"odd-{i}-" + "é" * (i % 3) + ("x" * 100 if i % 5 == 0 else ""),
            "user_id": user,
            "event_type": "view",
            "ts": BASE_TS + i * 1000,
        }
        if i % 4 == 0:
            ev["ts"] = (datetime(2023, 11, 14, tzinfo=UTC) + timedelta(seconds=i)).strftime(
                "%Y-%m-%dT%H:%M:%S.123456789+14:00"
            )
        if i % 4 == 1:
            ev["product"] = {"id": "p" * 128, "title": "Ω" * 512, "price": 0, "currency": "EUR"}
        if i % 4 == 2:
            ev.update(event_type="review", review={"rating": 5, "text": "t" * 4096})
        if i % 4 == 3:
            ev.update(event_type="search", query=string.printable * 10)
        out.append(ev)
    return out
