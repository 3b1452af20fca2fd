"""worker.evaluation.outcomes: reading (schema, event-time range, dedupe) and the comparison
of champion and shadow on synthetic outcome records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.support.outcomes import BASE_MS, outcome, synthetic
from worker.dataset.metrics import compute_metrics
from worker.errors import ConfigError
from worker.evaluation.outcomes import (
    compare_outcomes,
    format_comparison,
    outcomes_from_file,
    outcomes_from_records,
    verdict,
    write_outcome_report,
)
from worker.events.schemas import is_valid


def lines(records: list[dict]) -> list[tuple[bytes, str]]:
    return [(orjson.dumps(r), f"line {i}") for i, r in enumerate(records, 1)]


def test_the_synthetic_records_follow_the_schema() -> None:
    assert all(is_valid("intent-outcome.v1", r) for r in synthetic(50))


@pytest.mark.parametrize(("shadow", "expected"), [
    ("better", "shadow better"), ("worse", "shadow worse"), ("same", "no clear difference")])
def test_verdict_follows_the_pr_auc_interval(shadow: str, expected: str) -> None:
    records = synthetic(shadow=shadow)
    c = compare_outcomes(records, rounds=200)
    (pair,) = c.pairs
    assert pair.verdict == expected
    lo, hi = pair.intervals["pr_auc"]
    if expected == "shadow better":
        assert lo > 0 and pair.diff["pr_auc"] > 0 and pair.diff["brier"] < 0
    elif expected == "shadow worse":
        assert hi < 0
    else:  # the same scores: every resample's difference is exactly 0
        assert lo == hi == 0 and pair.diff == {"pr_auc": 0, "roc_auc": 0, "brier": 0}
    assert pair.n == len(records) and pair.positives == sum(r["label"] for r in records)
    assert pair.users == len({r["user_id"] for r in records})


def test_champion_figures_are_compute_metrics_on_label_and_score() -> None:
    records = synthetic(600, shadow=None) + synthetic(400, seed=1, shadow=None, version="2.1.0",
                                                      start=600)
    c = compare_outcomes(records)
    assert c.pairs == [] and set(c.champions) == {"intent-minilm 2.0.0", "intent-minilm 2.1.0"}
    for version, part in (("2.0.0", records[:600]), ("2.1.0", records[600:])):
        expected = compute_metrics([r["label"] for r in part], [r["score"] for r in part])
        assert c.champions[f"intent-minilm {version}"] == expected
        y, s = c.results[f"champion intent-minilm {version}"]
        assert len(y) == len(part)
    assert "no record carries a shadow score" in format_comparison(
        c, outcomes_from_records(lines(records), from_ms=None, to_ms=None))


def test_only_records_with_a_shadow_are_paired() -> None:
    records = synthetic(1000, shadow="better")
    for r in records[::2]:
        del r["shadow"]
    c = compare_outcomes(records, rounds=100)
    (pair,) = c.pairs
    assert pair.n == 500
    y, s = c.results["champion intent-minilm 2.0.0 (paired)"]
    assert len(y) == 500 and np.array_equal(s, [r["score"] for r in records[1::2]])
    assert len(c.results["champion intent-minilm 2.0.0"][0]) == 1000
    assert len(c.results["shadow intent-minilm 3.0.0"][0]) == 500


def test_too_few_positives_gives_no_verdict() -> None:
    records = synthetic(300, shadow="better")
    positives = [r for r in records if r["label"] == 1]
    for r in positives[5:]:
        r["label"] = 0
    (pair,) = compare_outcomes(records, rounds=100).pairs
    assert pair.verdict.startswith("too few positives") and "5 positives" in pair.verdict


@pytest.mark.parametrize(("ci", "expected"), [
    ([0.0, 0.2], "no clear difference"), ([1e-9, 0.2], "shadow better"),
    ([-0.2, -1e-9], "shadow worse"), ([-0.2, 0.0], "no clear difference"),
    (None, "too few positives")])
def test_verdict_bounds(ci: list[float] | None, expected: str) -> None:
    assert verdict(ci, positives=50, n=500).startswith(expected)


def test_duplicates_are_counted_and_the_first_wins() -> None:
    records = synthetic(100, shadow=None)
    again = dict(records[3])
    changed = dict(records[7], score=0.999)
    read = outcomes_from_records(lines(records + [again, changed, again]), from_ms=None,
                                 to_ms=None)
    assert read.read == 103 and len(read.records) == 100
    assert read.duplicates == 3 and read.conflicting == 1
    assert [r["score_id"] for r in read.records] == [r["score_id"] for r in records]
    assert read.records[7]["score"] == records[7]["score"]


def test_bad_records_are_counted_with_their_reason_and_never_used() -> None:
    good = synthetic(20, shadow=None)
    bad_label = dict(good[0], score_id="bad1", label=2)
    no_model = {k: v for k, v in good[1].items() if k != "model"} | {"score_id": "bad2"}
    bad_date = dict(good[2], score_id="bad3", event_ts="2019-13-45T00:00:00Z")
    raw = lines(good) + [(b"{not json", "line 21"), (orjson.dumps(bad_label), "line 22"),
                         (orjson.dumps(no_model), "line 23"), (orjson.dumps(bad_date), "line 24"),
                         (None, "line 25")]
    read = outcomes_from_records(raw, from_ms=None, to_ms=None)
    assert read.invalid == 5 and len(read.records) == 20
    assert not {"bad1", "bad2", "bad3"} & {r["score_id"] for r in read.records}
    reasons = " | ".join(read.invalid_examples)
    assert "line 21: not JSON" in reasons
    assert "line 22: not intent-outcome.v1: $.label" in reasons
    assert "line 23" in reasons and "model" in reasons
    assert "line 24: $.event_ts" in reasons
    assert sum(read.invalid_reasons.values()) == 5
    summary = read.summary()
    assert summary["invalid"] == 5 and summary["used"] == 20


def test_the_range_is_half_open_on_event_time() -> None:
    records = [outcome(i, user="u1", label=i % 2, score=0.5) for i in range(10)]
    read = outcomes_from_records(lines(records), from_ms=BASE_MS + 2000, to_ms=BASE_MS + 5000)
    assert [r["score_id"] for r in read.records] == ["s2", "s3", "s4"]
    assert read.out_of_range == 7
    with pytest.raises(ConfigError, match="empty time range"):
        outcomes_from_records([], from_ms=BASE_MS, to_ms=BASE_MS)


def test_reads_a_jsonl_file(tmp_path: Path) -> None:
    records = synthetic(30, shadow=None)
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records[:10]) + b"\n\n"
                     + b"{oops\n" + b"\n".join(orjson.dumps(r) for r in records[10:]) + b"\n")
    read = outcomes_from_file(path, from_ms=None, to_ms=None)
    assert len(read.records) == 30 and read.read == 31 and read.invalid == 1
    assert read.invalid_examples == ["line 12: not JSON"]
    with pytest.raises(ConfigError, match="cannot read"):
        outcomes_from_file(tmp_path / "missing.jsonl", from_ms=None, to_ms=None)


def test_report_is_evaluates_report_with_the_comparison(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    records = synthetic(800, shadow="better")
    read = outcomes_from_records(lines(records + records[:5]), from_ms=None, to_ms=None)
    c = compare_outcomes(read.records, rounds=100)
    index = write_outcome_report(tmp_path / "r", c, read, {"file": "x.jsonl"})
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert set(doc["models"]) == {"champion intent-minilm 2.0.0", "shadow intent-minilm 3.0.0"}
    expected = compute_metrics([r["label"] for r in records], [r["score"] for r in records])
    assert doc["models"]["champion intent-minilm 2.0.0"] == expected
    assert doc["meta"]["outcomes"]["duplicates"] == 5
    assert doc["meta"]["comparison"][0]["verdict"] == "shadow better"
    page = index.read_text()
    assert "shadow better" in page and page.index("shadow better") < page.index("<h2>Metrics")
