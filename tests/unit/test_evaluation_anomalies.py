"""worker.evaluation.anomalies on injected anomalies (no model: stand-in scores)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadtest.inject_anomalies import InjectConfig, inject, read_clean, write_outputs
from worker.anomaly import KINDS, DetectorConfig
from worker.errors import ConfigError
from worker.evaluation.anomalies import constant_scores, evaluate_detectors, format_table, main

SAMPLE = Path(__file__).resolve().parents[2] / "worker" / "data" / "sample-rees46.csv"


@pytest.fixture(scope="module")
def injected() -> tuple[list[dict], list[dict], dict]:
    clean = read_clean(SAMPLE, "rees46")
    events, labels = inject(clean, seed=0, config=InjectConfig(per_kind=10))
    return clean, events, labels


def test_detects_injected_anomalies_without_false_alerts(injected) -> None:
    _, events, labels = injected
    result = evaluate_detectors(events, labels, DetectorConfig())
    assert result["scorer"]["fallback"] is True
    assert "constant 0.0" in result["scorer"]["description"]
    for kind in KINDS:
        row = result["kinds"][kind]
        assert row["injected"] == 10
        assert row["recall"] >= 0.9, (kind, row)
        assert row["false"] == 0, (kind, result["false_alerts"])
    assert result["totals"]["clean_events"] == labels["clean_events"]
    assert result["thresholds"]["price_max_robust_z"] == 6.0
    table = format_table(result)
    for kind in KINDS:
        assert kind in table
    assert "false/10k" in table and "[fallback]" in table


def test_clean_data_alone_has_no_alerts_and_batching_does_not_matter(injected) -> None:
    clean, events, labels = injected
    result = evaluate_detectors(clean, {"anomalies": []}, DetectorConfig())
    assert result["totals"]["alerts"] == 0
    one = evaluate_detectors(events, labels, DetectorConfig(), constant_scores(0.01))
    many = evaluate_detectors(events, labels, DetectorConfig(), constant_scores(0.01),
                              batch_size=256)
    assert {k: v["detected"] for k, v in one["kinds"].items()} == {
        k: v["detected"] for k, v in many["kinds"].items()}


def test_score_gate_and_custom_score_function(injected) -> None:
    _, events, labels = injected
    high = evaluate_detectors(events, labels, DetectorConfig(), constant_scores(0.9))
    assert high["kinds"]["out_of_character_purchase"]["alerts"] == 0
    calls = []

    def fn(windows):
        calls.append(len(windows))
        return [0.0] * len(windows)

    result = evaluate_detectors(events, labels, DetectorConfig(), fn)
    assert calls and result["scorer"]["description"] == "caller's score function"
    assert result["kinds"]["out_of_character_purchase"]["recall"] >= 0.9


def test_bad_inputs(injected) -> None:
    _, events, _ = injected
    with pytest.raises(ConfigError):
        evaluate_detectors(events, {}, DetectorConfig())
    with pytest.raises(ConfigError):
        evaluate_detectors(events, {"anomalies": []}, DetectorConfig(), batch_size=0)
    with pytest.raises(ConfigError, match="bot_events"):
        evaluate_detectors(events, {"anomalies": []}, DetectorConfig(bot_events=1))


def test_cli_prints_the_table_and_writes_json(injected, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, events, labels = injected
    ev, lab, out = tmp_path / "e.jsonl", tmp_path / "l.json", tmp_path / "r.json"
    write_outputs(events, labels, ev, lab)
    code = main([str(ev), "--labels", str(lab), "--scorer", "constant", "--json", str(out),
                 "--set", "cooldown_s=900", "--sweep", "price_max_robust_z=5,8"])
    assert code == 0
    text = capsys.readouterr().out
    assert "purchase_velocity" in text and "sweep of price_max_robust_z" in text
    result = orjson.loads(out.read_bytes())
    assert result["thresholds"]["cooldown_s"] == 900.0
    assert [r["value"] for r in result["sweep"]["runs"]] == ["5", "8"]
    assert main([str(ev), "--labels", str(lab), "--scorer", "constant", "--set", "nope=1"]) == 2
