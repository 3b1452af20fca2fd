"""The JSON Schemas: standard draft 2020-12, documented, closed, and the loader/validator."""

from __future__ import annotations

import copy

import pytest
from jsonschema import Draft202012Validator

from worker.errors import BadEvent, ConfigError
from worker.events import schemas
from worker.events.deadletter import REASONS
from worker.events.parse import EVENT_TYPES

NAMES = ["click-event.v1", "intent-score.v1", "intent-score.v2", "dead-letter.v1",
         "catalog-product.v1"]


def _objects(node: object):
    """Every subschema (dict) of a schema, except the conditions of if/then rules."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "if":
                yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_standard_and_documented(name: str) -> None:
    schema = schemas.load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://intent-worker.dev/schemas/{name}.json"
    assert schema["title"] and schema["description"]
    for sub in _objects(schema):
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, sub
        for field, spec in sub.get("properties", {}).items():
            assert spec.get("description"), (name, field)


def test_catalogue_product_is_the_click_events_product() -> None:
    product = schemas.load_schema("click-event.v1")["properties"]["product"]
    catalogue = schemas.load_schema("catalog-product.v1")
    for key in ("type", "required", "additionalProperties", "properties"):
        assert catalogue[key] == product[key], key


def test_enums_match_the_code() -> None:
    click = schemas.load_schema("click-event.v1")
    assert set(click["properties"]["event_type"]["enum"]) == EVENT_TYPES
    dead = schemas.load_schema("dead-letter.v1")
    assert set(dead["properties"]["reason"]["enum"]) == REASONS


def test_loader_caches() -> None:
    assert schemas.load_schema("click-event.v1") is schemas.load_schema("click-event.v1")
    assert schemas.validator("click-event.v1") is schemas.validator("click-event.v1")


@pytest.mark.parametrize("name", ["nope.v1", "../pyproject", "click-event", ""])
def test_unknown_schema_names(name: str) -> None:
    with pytest.raises(ConfigError):
        schemas.load_schema(name)


def test_schema_dir_is_the_repo_folder() -> None:
    assert (schemas.schema_dir() / "click-event.v1.json").is_file()


def test_validate_raises_bad_event_with_short_detail() -> None:
    doc = {"event_id": "e", "user_id": "u", "event_type": "view", "ts": 946_684_800_000}
    schemas.validate("click-event.v1", doc)
    with pytest.raises(BadEvent) as info:
        schemas.validate("click-event.v1", {**doc, "event_id": "x" * 100_000})
    assert info.value.reason == "schema_violation"
    assert info.value.detail.startswith("$.event_id: ")
    assert len(info.value.detail) <= 300
    assert "xxxx" not in info.value.detail


def test_iter_errors_lists_every_violation() -> None:
    errors = list(schemas.iter_errors("click-event.v1", {"event_type": "search", "extra": 1}))
    text = "\n".join(errors)
    for word in ("event_id", "user_id", "ts", "query", "extra"):
        assert word in text
    doc = {"event_id": "e", "user_id": "u", "event_type": "view", "ts": 946_684_800_000}
    assert list(schemas.iter_errors("click-event.v1", doc)) == []


def test_json_path() -> None:
    assert schemas.json_path([]) == "$"
    assert schemas.json_path(["product", "price"]) == "$.product.price"
    assert schemas.json_path(["event_ids", 3]) == "$.event_ids[3]"
    assert schemas.json_path(["a b"]) == '$["a b"]'


SCORE = {
    "score_id": "5b1f0c",
    "user_id": "u1",
    "session_id": "s1",
    "event_id": "e3",
    "event_ids": ["e1", "e2", "e3"],
    "score": 0.73,
    "model": {"name": "minilm-fusion", "version": "2024-06-01"},
    "window": {"events": 3, "span_s": 12.5},
    "event_ts": "2019-10-01T00:00:12.500Z",
    "scored_at": "2019-10-01T00:00:13.010+00:00",
    "latency_ms": 41.2,
}


def _with(doc: dict, path: str, value: object) -> dict:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return out


DROP = object()

SCORE_CASES = {
    "full": (SCORE, True),
    "no score_id": (_with(SCORE, "score_id", DROP), True),
    "null session": (_with(SCORE, "session_id", None), True),
    "score 0": (_with(SCORE, "score", 0), True),
    "score 1": (_with(SCORE, "score", 1), True),
    "span 0": (_with(SCORE, "window.span_s", 0), True),
    "score above 1": (_with(SCORE, "score", 1.01), False),
    "score negative": (_with(SCORE, "score", -0.1), False),
    "session missing": (_with(SCORE, "session_id", DROP), False),
    "empty event_ids": (_with(SCORE, "event_ids", []), False),
    "duplicate event_ids": (_with(SCORE, "event_ids", ["e1", "e1"]), False),
    "zero events": (_with(SCORE, "window.events", 0), False),
    "fractional events": (_with(SCORE, "window.events", 1.5), False),
    "negative latency": (_with(SCORE, "latency_ms", -1), False),
    "naive scored_at": (_with(SCORE, "scored_at", "2019-10-01T00:00:13"), False),
    "epoch event_ts": (_with(SCORE, "event_ts", 1_569_888_012_500), False),
    "unknown field": (_with(SCORE, "extra", 1), False),
    "unknown model field": (_with(SCORE, "model.path", "/x"), False),
    "unknown window field": (_with(SCORE, "window.x", 1), False),
    "model without version": (_with(SCORE, "model.version", DROP), False),
}

DEAD = {
    "reason": "invalid_json",
    "detail": "unexpected character",
    "topic": "clickstream",
    "partition": 3,
    "offset": 12345,
    "key": "u1",
    "payload": "{not json",
    "payload_encoding": "utf-8",
    "payload_bytes": 9,
    "truncated": False,
    "received_at": "2024-05-01T12:00:00.000Z",
}

DEAD_CASES = {
    "full": (DEAD, True),
    "null key": (_with(DEAD, "key", None), True),
    "no key": (_with(DEAD, "key", DROP), True),
    "base64": (_with(_with(DEAD, "payload_encoding", "base64"), "payload", "/w=="), True),
    "unknown reason": (_with(DEAD, "reason", "oops"), False),
    "bad encoding": (_with(DEAD, "payload_encoding", "latin-1"), False),
    "negative offset": (_with(DEAD, "offset", -1), False),
    "long detail": (_with(DEAD, "detail", "d" * 1025), False),
    "truncated not bool": (_with(DEAD, "truncated", 1), False),
    "naive received_at": (_with(DEAD, "received_at", "2024-05-01T12:00:00"), False),
    "unknown field": (_with(DEAD, "extra", 1), False),
    "payload missing": (_with(DEAD, "payload", DROP), False),
}


@pytest.mark.parametrize(("doc", "ok"), SCORE_CASES.values(), ids=SCORE_CASES.keys())
def test_intent_score_examples(doc: dict, ok: bool) -> None:
    assert schemas.is_valid("intent-score.v1", doc) is ok
    assert Draft202012Validator(schemas.load_schema("intent-score.v1")).is_valid(doc) is ok
    assert schemas.is_valid("intent-score.v2", doc) is ok  # v2 only adds an optional field


EXPLANATION = {
    "logit": -1.5, "baseline": {"logit": -3.0, "score": 0.047},
    "features": [{"name": "events_log", "value": 1.1, "contribution": 0.4}],
    "other_features": 0.6, "events_total": 0.5,
    "events": [{"event_id": "e1", "event_type": "view", "effect": -0.01}],
}


@pytest.mark.parametrize(("explanation", "ok"), [
    (EXPLANATION, True),
    ({**EXPLANATION, "events": []}, True),
    ({k: v for k, v in EXPLANATION.items() if k != "baseline"}, False),
    ({**EXPLANATION, "events": [{"event_id": "e1", "event_type": "view", "effect": 2}]}, False),
    ({**EXPLANATION, "why": "no"}, False),
])
def test_intent_score_v2_explanation(explanation: dict, ok: bool) -> None:
    doc = {**next(iter(SCORE_CASES.values()))[0], "explanation": explanation}
    assert schemas.is_valid("intent-score.v2", doc) is ok
    assert not schemas.is_valid("intent-score.v1", doc)  # v1 rejects the new field


@pytest.mark.parametrize(("doc", "ok"), DEAD_CASES.values(), ids=DEAD_CASES.keys())
def test_dead_letter_examples(doc: dict, ok: bool) -> None:
    assert schemas.is_valid("dead-letter.v1", doc) is ok
    assert Draft202012Validator(schemas.load_schema("dead-letter.v1")).is_valid(doc) is ok
