"""A model directory's offline figures from its metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from worker.model import default_model_path
from worker.model.offline import offline_figures


def write(tmp_path: Path, data: object) -> Path:
    (tmp_path / "metrics.json").write_text(json.dumps(data))
    return tmp_path


def test_the_shipped_model_has_both_figures() -> None:
    shipped = json.loads((default_model_path() / "metrics.json").read_text())["val"]["bert"]
    assert offline_figures(default_model_path()) == {"pr_auc": shipped["pr_auc"],
                                                     "roc_auc": shipped["roc_auc"]}


def test_only_the_validation_figures_of_the_model_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, {"val": {"bert": {"pr_auc": 0.3, "roc_auc": 0.8, "brier": 0.04},
                                    "baseline": {"pr_auc": 0.9, "roc_auc": 0.9}},
                            "test": {"bert": {"pr_auc": 0.5}}})
    assert offline_figures(path) == {"pr_auc": 0.3, "roc_auc": 0.8}


def test_no_metrics_file_means_no_figures(tmp_path: Path) -> None:
    assert offline_figures(tmp_path) == {}


@pytest.mark.parametrize("data", [
    {"val": {"bert": {"pr_auc": None, "roc_auc": "0.7"}}},  # undefined, not a number
    {"val": {"bert": {"pr_auc": float("nan"), "roc_auc": True}}},
    {"val": {"bert": [0.1]}},
    {"val": None},
    [1, 2],
])
def test_missing_or_bad_figures_are_left_out(tmp_path: Path, data: object) -> None:
    assert offline_figures(write(tmp_path, data)) == {}


def test_one_figure_alone_is_kept(tmp_path: Path) -> None:
    assert offline_figures(write(tmp_path, {"val": {"bert": {"roc_auc": 0.61}}})) == {
        "roc_auc": 0.61}


def test_an_unreadable_file_is_logged_and_gives_no_figures(tmp_path: Path, caplog) -> None:
    (tmp_path / "metrics.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="worker.model.offline"):
        assert offline_figures(tmp_path) == {}
    assert "metrics.json not read" in caplog.text
