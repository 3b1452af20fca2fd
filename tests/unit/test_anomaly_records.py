"""Alert ids and alert records against schemas/anomaly-alert.v1.json."""

from __future__ import annotations

import copy

import pytest
from jsonschema import Draft202012Validator

from worker.anomaly import (
    KINDS,
    SEVERITIES,
    Alert,
    CategoryStats,
    DetectorConfig,
    ModelRef,
    alert_id,
    alert_record,
    detect_all,
    ooc_candidates,
)
from worker.errors import BadEvent
from worker.events import schemas

NAME = "anomaly-alert.v1"
T0 = 1_569_888_000_000  # 2019-10-01T00:00:00Z
CFG = DetectorConfig()


def test_alert_id_is_deterministic_and_sensitive_to_every_part() -> None:
    a = alert_id("price_outlier", "u1", ["e1", "e2"])
    assert a == alert_id("price_outlier", "u1", ["e1", "e2"])
    assert len(a) == 32 and int(a, 16) >= 0
    others = {alert_id("bot_cadence", "u1", ["e1", "e2"]), alert_id("price_outlier", "u2",
              ["e1", "e2"]), alert_id("price_outlier", "u1", ["e2", "e1"]),
              alert_id("price_outlier", "u1", ["e1"]), alert_id("price_outlier", "u1e1", ["e2"])}
    assert a not in others and len(others) == 5


def test_schema_is_standard_and_documented() -> None:
    schema = schemas.load_schema(NAME)
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"https://intent-worker.dev/schemas/{NAME}.json"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["enum"] == list(KINDS)
    assert schema["properties"]["severity"]["enum"] == list(SEVERITIES)
    for name, spec in schema["properties"].items():
        assert spec.get("description"), name
    for name, spec in schema["properties"]["evidence"]["properties"].items():
        assert spec.get("description"), name


def _every_kind() -> list[Alert]:
    """Real detector output with one alert of each kind."""
    st = CategoryStats(200)
    for i in range(40):
        st.add(100.0 + i)
    stats = {"electronics.smartphone": st}
    window = [{"event_id": "v0", "user_id": "u1", "event_type": "view", "ts": T0 - 60_000,
               "product": {"id": "other", "category": "apparel.shoes", "price": 50.0}}]
    burst = [{"event_id": f"b{i}", "user_id": "u1", "event_type": "purchase", "ts": T0 + i * 100,
              "session_id": "s1",
              "product": {"id": f"p{i}", "category": "electronics.smartphone",
                          "price": 1e6 if i == 0 else 120.0}} for i in range(12)]
    window += burst
    prior = {c.purchase["event_id"]: 0.012345678 for c in ooc_candidates(window, burst, CFG)}
    alerts = detect_all(window, burst, config=CFG, stats=stats, prior_scores=prior,
                        model=ModelRef("intent-minilm", "1.0.0"))
    assert {a.kind for a in alerts} == set(KINDS)
    return alerts


def test_records_of_every_kind_are_valid() -> None:
    for alert in _every_kind():
        record = alert_record(alert)
        schemas.validate(NAME, record)
        assert Draft202012Validator(schemas.load_schema(NAME)).is_valid(record)
        assert record["detected_at"] == record["event_ts"]  # no clock: reproducible
        assert (record["model"] is None) == (alert.kind != "out_of_character_purchase")
        with_clock = alert_record(alert, detected_at_ms=T0 + 5_000)
        assert with_clock["detected_at"] == "2019-10-01T00:00:05.000Z"
        schemas.validate(NAME, with_clock)


def test_records_are_reproducible() -> None:
    first = [alert_record(a) for a in _every_kind()]
    assert first == [alert_record(a) for a in _every_kind()]


def _record() -> dict:
    return alert_record(next(a for a in _every_kind() if a.kind == "price_outlier"))


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(kind="gift_card_abuse"),
    lambda r: r.update(severity="critical"),
    lambda r: r.update(extra=1),
    lambda r: r.update(alert_id="not-a-hash"),
    lambda r: r.update(event_ts="2019-10-01 00:00:00"),
    lambda r: r.update(model={"name": "m"}),
    lambda r: r.pop("model"),
    lambda r: r["evidence"].pop("event_ids"),
    lambda r: r["evidence"].update(event_ids=[]),
    lambda r: r["evidence"].pop("thresholds"),
    lambda r: r["evidence"].pop("robust_z"),  # required for price_outlier
    lambda r: r["evidence"]["thresholds"].pop("max_robust_z"),
    lambda r: r["evidence"].update(note=None),  # extra evidence: numbers or strings only
    lambda r: r["evidence"]["thresholds"].update(note="x"),
])
def test_invalid_records_are_rejected(mutate) -> None:
    record = copy.deepcopy(_record())
    schemas.validate(NAME, record)
    mutate(record)
    with pytest.raises(BadEvent):
        schemas.validate(NAME, record)


def test_extra_evidence_numbers_and_strings_are_allowed() -> None:
    record = _record()
    record["evidence"]["orders_today"] = 3
    record["evidence"]["note"] = "checked"
    schemas.validate(NAME, record)
