"""`intent-worker evaluate --outcomes` as a user runs it, on a file of outcome records."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from tests.support.outcomes import BASE_MS, synthetic
from worker.cli import main
from worker.dataset.metrics import compute_metrics


@pytest.fixture
def outcomes_file(tmp_path: Path) -> Path:
    path = tmp_path / "outcomes.jsonl"
    records = synthetic(1000, shadow="better")
    extra = [records[0], {"score_id": "x"}]  # a redelivery and a bad record
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records + extra) + b"\n")
    return path


def test_outcomes_file_report_table_and_verdict(outcomes_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = tmp_path / "report"
    r = CliRunner().invoke(main, ["evaluate", "--outcomes", "--outcomes-file", str(outcomes_file),
                                  "--from-time", "2019-10-01T00:00:00Z",
                                  "--to-time", str(BASE_MS + 500_000), "--out", str(report)])
    assert r.exit_code == 0, r.output
    assert "verdict: shadow better" in r.output
    assert "1002 records read: 500 used, 500 outside the range, 1 duplicates" in r.output
    assert "1 invalid" in r.output and "line 1002: not intent-outcome.v1" in r.output
    doc = json.loads((report / "metrics.json").read_text())
    used = synthetic(1000, shadow="better")[:500]
    assert doc["models"]["champion intent-minilm 2.0.0"] == compute_metrics(
        [x["label"] for x in used], [x["score"] for x in used])
    assert (report / "index.html").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--outcomes-file", "{file}"], "--report DIR"),
    (["--outcomes-file", "{file}", "--report", "{out}", "--from-time", "yesterday"],
     "--from-time"),
    (["--outcomes-file", "{file}", "--report", "{out}", "--from-time", "2019-10-02T00:00:00Z",
      "--to-time", "2019-10-01T00:00:00Z"], "--from-time must be before --to-time"),
    (["--outcomes-file", "{file}", "--report", "{out}", "--from-time", "2020-01-01T00:00:00Z"],
     "no valid outcome records"),
    (["--outcomes-file", "{dir}/missing.jsonl", "--report", "{out}"], "does not exist"),
    (["--outcomes", "--outcomes-file", "{file}", "--report", "{out}", "--model", "{dir}"],
     "drop --model"),
    (["--outcomes", "{file}", "--format", "jsonl", "--report", "{out}"], "drop INPUT, --format"),
    (["--outcomes", "--outcomes-file", "{file}", "--topic", "t", "--report", "{out}"],
     "not both"),
    (["--outcomes-file", "{file}", "--report", "{out}", "--users", "val"], "drop --users"),
])
def test_bad_flags_say_what_to_fix(outcomes_file: Path, tmp_path: Path, args: list[str],
                                   message: str) -> None:
    args = [a.format(file=outcomes_file, out=tmp_path / "out", dir=tmp_path) for a in args]
    r = CliRunner().invoke(main, ["evaluate", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_a_file_of_only_bad_records_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    r = CliRunner().invoke(main, ["evaluate", "--outcomes-file", str(path), "--report",
                                  str(tmp_path / "out")])
    assert r.exit_code == 2 and "1 invalid (e.g. line 1: not JSON)" in r.output
