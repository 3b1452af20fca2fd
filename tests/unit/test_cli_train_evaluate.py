"""`intent-worker train` and `evaluate` as a user runs them (tiny encoder, synthetic events)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import write_tiny_encoder
from worker.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    events = root / "events.jsonl"
    lines = [orjson.dumps(e) for e in synthetic_events(users=60, seed=3)] + [b"{broken"]
    events.write_bytes(b"\n".join(lines) + b"\n")
    encoder = write_tiny_encoder(root / "encoder", max_positions=128)
    return events, encoder


def test_train_then_evaluate(data, tmp_path: Path) -> None:
    events, encoder = data
    out = tmp_path / "model"
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(events), "--format", "jsonl", "--out", str(out),
                                  "--encoder", str(encoder), "--version", "0.1.0",
                                  "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output and "baseline" in result.output
    assert (out / "config.json").is_file() and (out / "metrics.json").is_file()

    again = runner.invoke(main, ["train", str(events), "--format", "jsonl", "--out", str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output

    report = tmp_path / "report"
    result = runner.invoke(main, ["evaluate", str(events), "--format", "jsonl", "--model", str(out),
                                  "--report", str(report), "--users", "all"])
    assert result.exit_code == 0, result.output
    assert "training data" not in result.output or "--users val" in result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {"bert", "gbdt-baseline"}
    for m in metrics["models"].values():
        assert {"roc_auc", "pr_auc", "best_f1", "threshold", "precision_at_top_k", "brier", "ece",
                "counts"} <= set(m)
    assert {"roc.png", "pr.png", "calibration.png", "scores.png", "index.html"} <= {
        p.name for p in report.iterdir()}
    # the pooled model's example explanations: highest, lowest, biggest errors, each adding up
    examples = json.loads((report / "explanations.json").read_text())
    assert [e["group"] for e in examples] == ["highest score"] * 3 + ["lowest score"] * 3 + [
        "biggest error"] * 3
    scores = [e["score"] for e in examples]
    assert min(scores[:3]) >= max(scores[3:6])
    for e in examples:
        exp = e["explanation"]
        total = (exp["baseline"]["logit"] + sum(f["contribution"] for f in exp["features"])
                 + exp["other_features"] + exp["events_total"])
        assert abs(total - exp["logit"]) < 1e-6
        assert {x["event_id"] for x in exp["events"]} <= {w["event_id"] for w in e["window"]}
    assert 'href="explanations.html"' in (report / "index.html").read_text()
    assert "example explanations" in (report / "explanations.html").read_text()


def test_evaluate_flags_say_what_to_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["evaluate", "--report", str(tmp_path)])
    assert r.exit_code == 2 and "either INPUT" in r.output
    r = runner.invoke(main, ["evaluate", "--topic", "t", "--speed", "2", "--report", str(tmp_path)])
    assert r.exit_code == 2 and "--speed needs --publish-to" in r.output
    r = runner.invoke(main, ["evaluate", "--topic", "t", "--from-time", "yesterday",
                             "--report", str(tmp_path)])
    assert r.exit_code != 0 and "yesterday" in r.output and "Traceback" not in r.output
