"""worker.evaluation.report: files, metrics.json equal to compute_metrics, HTML with every plot."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worker.dataset.metrics import compute_metrics
from worker.evaluation.report import PLOTS, write_report

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.2).astype(int)
    bert = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    gbdt = np.clip(rng.normal(0.35 + 0.2 * y, 0.2), 0, 1)
    return {"bert": (y, bert), "gbdt-baseline": (y, gbdt)}


def test_writes_every_file(tmp_path: Path) -> None:
    results = _results()
    meta = {"model_dir": "/models/bert-v3", "from": "2024-05-01T00:00:00Z", "events": 12345,
            "nested": {"a": [1, 2]}}
    index = write_report(tmp_path / "out", results, title="bert vs <gbdt> & co", meta=meta)

    assert index == tmp_path / "out" / "index.html"
    for name in ("metrics.json", "index.html", *PLOTS):
        assert (tmp_path / "out" / name).is_file(), name
    for name in PLOTS:
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG_MAGIC)

    doc = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert doc == {"models": {name: compute_metrics(y, s) for name, (y, s) in results.items()},
                   "meta": meta}


def test_html_references_every_plot_and_is_self_contained(tmp_path: Path) -> None:
    index = write_report(tmp_path, _results(), title="bert vs <gbdt> & co", meta={"who": "<me>"})
    text = index.read_text(encoding="utf-8")
    for name in PLOTS:
        assert f'href="{name}"' in text
        embedded = base64.b64encode((tmp_path / name).read_bytes()).decode("ascii")
        assert f"data:image/png;base64,{embedded}" in text
    assert text.count("data:image/png;base64,") == len(PLOTS)
    assert "<title>bert vs &lt;gbdt&gt; &amp; co</title>" in text
    assert "<td>bert</td>" in text and "<td>gbdt-baseline</td>" in text
    assert "&lt;me&gt;" in text and "<me>" not in text
    assert 'href="metrics.json"' in text
    m = compute_metrics(*_results()["bert"])
    assert f"{m['roc_auc']:.4f}" in text and f"{m['ece']:.4f}" in text


def test_degenerate_models_do_not_break_the_report(tmp_path: Path) -> None:
    results = {
        "one-class": ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.9]),
        "empty": ([], []),
        "ok": ([0, 1, 0, 1], [0.2, 0.8, 0.4, 0.6]),
    }
    index = write_report(tmp_path, results, title="edge cases", meta={})
    doc = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert doc["models"]["one-class"]["roc_auc"] is None
    assert doc["models"]["empty"]["counts"]["n"] == 0
    text = index.read_text(encoding="utf-8")
    assert "n/a" in text and "one class" in text  # the note is shown


def test_rejects_empty_results_and_bad_scores(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        write_report(tmp_path, {}, title="t", meta={})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_report(tmp_path, {"m": ([0, 1], [0.5, 3.0])}, title="t", meta={})
    with pytest.raises(ValueError, match="values"):
        write_report(tmp_path, {"m": ([0, 1], [0.5])}, title="t", meta={})
    with pytest.raises(ValueError, match="0/1"):
        write_report(tmp_path, {"m": (["yes", "no"], [0.5, 0.2])}, title="t", meta={})


def test_overwrites_a_previous_report(tmp_path: Path) -> None:
    write_report(tmp_path, {"a": ([0, 1], [0.1, 0.9])}, title="first", meta={})
    write_report(tmp_path, {"b": ([0, 1], [0.9, 0.1])}, title="second", meta={})
    doc = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert list(doc["models"]) == ["b"]
    assert "second" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_no_matplotlib_or_pyplot_at_import_or_after_a_report(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import worker.evaluation\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "from worker.evaluation import write_report\n"
        f"write_report({str(tmp_path)!r}, {{'m': ([0, 1, 1], [0.2, 0.7, 0.9])}},\n"
        "             title='t', meta={})\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot (global state) was used'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
