"""loadtest.inject_anomalies: deterministic, labelled, valid click events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from loadtest.inject_anomalies import KINDS, InjectConfig, inject, main, read_clean
from worker.events import parse_event

SAMPLE = Path(__file__).resolve().parents[2] / "worker" / "data" / "sample-rees46.csv"


@pytest.fixture(scope="module")
def clean() -> list[dict]:
    return read_clean(SAMPLE, "rees46")


def test_same_seed_same_output_other_seed_other_output(clean: list[dict]) -> None:
    cfg = InjectConfig(per_kind=6)
    events, labels = inject(clean, seed=3, config=cfg)
    again, labels_again = inject(clean, seed=3, config=cfg)
    assert orjson.dumps(events) == orjson.dumps(again)
    assert orjson.dumps(labels) == orjson.dumps(labels_again)
    other, _ = inject(clean, seed=4, config=cfg)
    assert orjson.dumps(other) != orjson.dumps(events)


def test_labels_match_the_events(clean: list[dict]) -> None:
    events, labels = inject(clean, seed=0, config=InjectConfig(per_kind=8))
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == len(clean) + labels["injected_events"]
    assert labels["clean_events"] == len(clean)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert Counter(a["kind"] for a in labels["anomalies"]) == {k: 8 for k in KINDS}
    clean_ids = {e["event_id"] for e in clean}
    injected = {eid for a in labels["anomalies"] for eid in a["event_ids"]}
    assert len(injected) == labels["injected_events"] and not injected & clean_ids
    assert injected <= set(ids)
    for kind in KINDS:
        mine = [a for a in labels["anomalies"] if a["kind"] == kind]
        assert labels["by_kind"][kind]["event_ids"] == [e for a in mine for e in a["event_ids"]]
        assert set(labels["by_kind"][kind]["user_ids"]) == {a["user_id"] for a in mine}
    assert any(a["new_user"] for a in labels["anomalies"])
    assert any(not a["new_user"] for a in labels["anomalies"])


def test_injected_anomalies_have_their_shape(clean: list[dict]) -> None:
    events, labels = inject(clean, seed=1, config=InjectConfig(per_kind=10))
    by_id = {e["event_id"]: e for e in events}
    for a in labels["anomalies"]:
        mine = [by_id[i] for i in a["event_ids"]]
        assert {e["user_id"] for e in mine} == {a["user_id"]}
        types = Counter(e["event_type"] for e in mine)
        if a["kind"] == "purchase_velocity":
            assert 6 <= types["purchase"] <= 50
        elif a["kind"] == "bot_cadence":
            assert len(mine) >= 20 and types["purchase"] == 0
        elif a["kind"] == "out_of_character_purchase":
            assert types["purchase"] == 1 and mine[-1]["event_type"] == "purchase"
        else:
            assert [e["event_type"] for e in mine] == ["view", "purchase"]
            assert mine[1]["product"]["price"] == a["details"]["price"]
            assert abs(a["details"]["file_robust_z"]) >= 8


def test_cli_writes_valid_click_events(tmp_path: Path) -> None:
    out, labels = tmp_path / "events.jsonl", tmp_path / "labels.json"
    args = [str(SAMPLE), "--format", "rees46", "--out", str(out), "--labels", str(labels),
            "--seed", "0", "--per-kind", "3"]
    assert main(args) == 0
    first = out.read_bytes(), labels.read_bytes()
    lines = first[0].splitlines()
    parsed = [parse_event(line, max_bytes=65536) for line in lines]  # valid v1 events
    assert len(parsed) == orjson.loads(first[1])["clean_events"] + orjson.loads(first[1])[
        "injected_events"]
    assert main(args) == 0
    assert (out.read_bytes(), labels.read_bytes()) == first
    # the JSON Lines output can be read back as input
    assert len(read_clean(out, "jsonl")) == len(parsed)


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main([str(bad), "--out", str(tmp_path / "o"), "--labels", str(tmp_path / "l")]) == 2
    assert "missing columns" in capsys.readouterr().err
