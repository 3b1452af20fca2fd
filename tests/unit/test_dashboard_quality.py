"""The Grafana dashboard's "Model quality" row shows every live quality, drift and outcome
metric the worker exports, with the PSI thresholds the operations guide gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUALITY = {"intent_live_pr_auc", "intent_live_roc_auc", "intent_live_brier", "intent_live_ece",
           "intent_live_outcomes", "intent_live_positives", "intent_score_psi",
           "intent_outcomes_total", "intent_outcome_seconds_sum"}


def quality_row() -> list[dict]:
    """The panels below the "Model quality" row (up to the next row)."""
    panels = json.loads((ROOT / "deploy/grafana/dashboards/intent-worker.json").read_text())[
        "panels"]
    (start,) = [i for i, p in enumerate(panels)
                if p["type"] == "row" and p["title"] == "Model quality"]
    assert panels[start]["collapsed"] is False  # its panels at the top level, checked by name
    below = []
    for p in panels[start + 1:]:
        if p["type"] == "row":
            break
        below.append(p)
    return below


def test_the_model_quality_row_queries_every_quality_metric() -> None:
    names = {n for p in quality_row() for t in p["targets"]
             for n in re.findall(r"\bintent_[a-z_]+", t["expr"])}
    assert not QUALITY - names, sorted(QUALITY - names)


def test_live_figures_are_shown_per_model_version_and_role() -> None:
    for panel in quality_row():
        for target in panel["targets"]:
            if re.search(r"intent_(live|score)_", target["expr"]):
                assert "by (model, version, role)" in target["expr"], target["expr"]
                assert "{{role}}" in target["legendFormat"], panel["title"]


def test_the_psi_panel_draws_lines_at_0_1_and_0_2() -> None:
    (psi,) = [p for p in quality_row() if "intent_score_psi" in p["targets"][0]["expr"]]
    defaults = psi["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 0.1, 0.2]
