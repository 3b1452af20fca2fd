"""An evaluation report: ``metrics.json``, four comparison plots and one ``index.html``.

``write_report`` compares every model in ``results`` (e.g. ``"bert"`` vs ``"gbdt-baseline"``)
on the same plots. matplotlib is imported only when a report is written, and only its
object API with the Agg canvas is used (no pyplot, no global backend switch), so this is
safe in a worker thread and on a machine without a display.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset.metrics import calibration_bins, compute_metrics, pr_curve, roc_curve

__all__ = ["PLOTS", "write_report"]

# file name -> caption, in the order they appear in index.html
PLOTS: dict[str, str] = {
    "roc.png": "ROC curves",
    "pr.png": "Precision-recall curves (dashed: positive rate, the no-skill baseline)",
    "calibration.png": "Calibration (reliability) diagram",
    "scores.png": "Score distribution by class",
}
_N_BINS = 10
_MAX_CURVE_POINTS = 2000  # curves are drawn from at most this many points (plus the end points)


def write_report(out_dir: str | Path, results: Mapping[str, tuple[Iterable, Iterable]], *,
                 title: str, meta: Mapping[str, Any],
                 top_k_pcts: tuple[float, ...] = (1, 5, 10), n_bins: int = _N_BINS,
                 explanations: Sequence[Mapping[str, Any]] = (),
                 summary: Sequence[str] = ()) -> Path:
    """Write the report into ``out_dir`` (created if missing, files overwritten) and return
    the path of its ``index.html``.

    ``results`` maps a model name to ``(y_true, y_score)``. ``metrics.json`` is
    ``{"models": {name: compute_metrics(y_true, y_score)}, "meta": meta}``; ``meta`` must be
    JSON-serialisable (values it cannot serialise are written with ``str``). A model with
    one class only still gets its metrics and histograms; the curves it cannot have are
    left out of the ROC/PR plots and named in the legend. ``explanations`` (example windows,
    each ``{"group", "user_id", "label", "score", "window": [events newest first],
    "explanation": <a score record's explanation>}``) go to ``explanations.html`` and
    ``explanations.json``, linked from the index. ``summary`` lines (verdicts) are shown
    above the metrics table.
    """
    if not results:
        raise ValueError("results is empty: nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = {str(name): _arrays(name, yt, ys) for name, (yt, ys) in results.items()}
    # compute_metrics validates (labels 0/1, scores in [0, 1]) before anything is drawn
    metrics = {name: compute_metrics(y, s, top_k_pcts=top_k_pcts, n_bins=n_bins)
               for name, (y, s) in raw.items()}
    data = {name: (y.astype(np.float64), s.astype(np.float64)) for name, (y, s) in raw.items()}
    doc = {"models": metrics, "meta": dict(meta)}
    (out / "metrics.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n",
        encoding="utf-8")

    _plot_roc(out / "roc.png", data, metrics)
    _plot_pr(out / "pr.png", data, metrics)
    _plot_calibration(out / "calibration.png", data, n_bins)
    _plot_scores(out / "scores.png", data)

    if explanations:
        (out / "explanations.json").write_text(
            json.dumps(list(explanations), indent=2, ensure_ascii=False, default=str) + "\n",
            encoding="utf-8")
        (out / "explanations.html").write_text(_explanations_html(title, explanations),
                                               encoding="utf-8")
    index = out / "index.html"
    page = _html(title, metrics, json.loads(json.dumps(dict(meta), default=str)), out)
    if summary:
        lines = "".join(f"<p><b>{html.escape(line)}</b></p>" for line in summary)
        page = page.replace("<h2>Metrics</h2>", lines + "\n<h2>Metrics</h2>", 1)
    if explanations:
        page = page.replace("<h2>Plots</h2>", '<p>Example explanations (highest and lowest '
                            'scores, biggest errors): <a href="explanations.html">'
                            "explanations.html</a>.</p>\n<h2>Plots</h2>", 1)
    index.write_text(page, encoding="utf-8")
    return index


def _explanations_html(title: str, examples: Sequence[Mapping[str, Any]]) -> str:
    """One section per example: its score and label, its events newest first with their
    effects, its largest feature contributions."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}: explanations</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}: example explanations</h1>",
             "<p>Effect of an event: the score minus the score of the window without it (the "
             "context features held). Contribution of a feature: its value times the head's "
             "weight, on the logit. Baseline: no events, every context feature at 0.</p>"]
    for ex in examples:
        exp = ex["explanation"]
        parts.append(f"<h2>{esc(str(ex['group']))}: user {esc(str(ex['user_id']))}, score "
                     f"{ex['score']:.4f}, label {ex['label']} (baseline "
                     f"{exp['baseline']['score']:.4f})</h2>")
        parts.append("<table><thead><tr><th>event (newest first)</th><th>type</th>"
                     "<th>product</th><th>effect</th></tr></thead><tbody>")
        for e in ex["window"]:
            effect = e["effect"]
            parts.append(f"<tr><td>{esc(str(e['event_id']))}</td><td>{esc(e['event_type'])}</td>"
                         f"<td>{esc(str(e.get('product_id') or '-'))}</td>"
                         f"<td>{'' if effect is None else f'{effect:+.4f}'}</td></tr>")
        parts.append("</tbody></table><table><thead><tr><th>feature</th><th>value</th>"
                     "<th>contribution</th></tr></thead><tbody>")
        for f in exp["features"]:
            parts.append(f"<tr><td>{esc(f['name'])}</td><td>{f['value']:.4f}</td>"
                         f"<td>{f['contribution']:+.4f}</td></tr>")
        parts.append(f"<tr><td>(other features)</td><td></td><td>{exp['other_features']:+.4f}"
                     f"</td></tr><tr><td>(events together)</td><td></td>"
                     f"<td>{exp['events_total']:+.4f}</td></tr></tbody></table>")
    parts += ["</body></html>", ""]
    return "\n".join(parts)


# -- plots -------------------------------------------------------------------------------


def _arrays(name: object, y_true: Iterable, y_score: Iterable) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true if isinstance(y_true, np.ndarray) else list(y_true))
    s = np.asarray(y_score if isinstance(y_score, np.ndarray) else list(y_score))
    if y.shape != s.shape:
        raise ValueError(f"model {name!r}: y_true has {y.size} values but y_score has {s.size}")
    return y, s


def _figure(ncols: int = 1, width: float = 6.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=110)


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep at most about _MAX_CURVE_POINTS evenly spaced points of same-length curve arrays
    (first and last kept): millions of thresholds look the same and draw much faster."""
    n = arrays[0].size
    if n <= _MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.r_[np.linspace(0, n - 1, _MAX_CURVE_POINTS).astype(np.int64), n - 1])
    return tuple(a[keep] if a.size == n else a for a in arrays)


def _two_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < y.size


def _plot_roc(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]],
              metrics: dict[str, dict]) -> None:
    fig = _figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    for i, (name, (y, s)) in enumerate(data.items()):
        if _two_classes(y):
            fpr, tpr, _ = _thin(*roc_curve(y, s))
            ax.plot(fpr, tpr, color=f"C{i}", label=f"{name} (AUC {metrics[name]['roc_auc']:.3f})")
        else:
            ax.plot([], [], color=f"C{i}", label=f"{name} (n/a: one class)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC")
    ax.legend(loc="lower right")
    _save(fig, path)


def _plot_pr(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]],
             metrics: dict[str, dict]) -> None:
    fig = _figure()
    ax = fig.subplots()
    rates: dict[float, list[str]] = {}
    for i, (name, (y, s)) in enumerate(data.items()):
        if y.size:
            rates.setdefault(round(float(y.mean()), 12), []).append(name)
        if _two_classes(y):
            precision, recall, _ = _thin(*pr_curve(y, s))
            ax.step(recall, precision, where="post", color=f"C{i}",
                    label=f"{name} (AP {metrics[name]['pr_auc']:.3f})")
        else:
            ax.plot([], [], color=f"C{i}", label=f"{name} (n/a: one class)")
    for rate, names in rates.items():
        # one baseline per distinct positive rate (usually all models share the labels)
        who = "" if len(rates) == 1 else f" ({', '.join(names)})"
        ax.axhline(rate, linestyle="--", color="grey", label=f"positive rate {rate:.3f}{who}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-recall")
    ax.legend(loc="upper right")
    _save(fig, path)


def _plot_calibration(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]],
                      n_bins: int) -> None:
    fig = _figure()
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    width = 1.0 / n_bins / (len(data) + 1)
    for i, (name, (y, s)) in enumerate(data.items()):
        bins = calibration_bins(y, s, n_bins)
        full = [b for b in bins if b.count]
        top.plot([b.mean_score for b in full], [b.positive_rate for b in full], marker="o",
                 color=f"C{i}", label=name)
        bottom.bar([b.lo + width * (i + 0.5) for b in bins], [b.count for b in bins],
                   width=width, align="center", color=f"C{i}", label=name)
    top.set(ylabel="fraction of positives", xlim=(0, 1), ylim=(0, 1.01),
            title=f"Calibration ({n_bins} equal-width bins)")
    top.legend(loc="upper left")
    bottom.set(xlabel="score (top: mean score of each bin; bottom: samples per bin)",
               ylabel="samples")
    if any(y.size for y, _ in data.values()):
        bottom.set_yscale("log")
    _save(fig, path)


def _plot_scores(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    fig = _figure(ncols=2, width=5.0)
    axes = fig.subplots(1, 2, sharex=True)
    edges = np.linspace(0.0, 1.0, 41)
    panels = ((axes[0], "negatives (label 0)", 0.0), (axes[1], "positives (label 1)", 1.0))
    for ax, label, cls in panels:
        for i, (name, (y, s)) in enumerate(data.items()):
            part = s[y == cls]
            if part.size:
                ax.hist(part, bins=edges, density=True, histtype="step", linewidth=1.5,
                        color=f"C{i}", label=f"{name} (n={part.size})")
            else:
                ax.plot([], [], color=f"C{i}", label=f"{name} (none)")
        ax.set(xlabel="score", ylabel="density", xlim=(0, 1), title=label)
        ax.legend(loc="upper center")
    _save(fig, path)


# -- html --------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 1rem 1rem 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
code { font-size: .9em; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _html(title: str, metrics: dict[str, dict], meta: dict, out: Path) -> str:
    esc = html.escape
    pct_keys = list(next(iter(metrics.values()))["precision_at_top_k"])
    cols = (["ROC AUC", "PR AUC (AP)", "best F1", "at threshold"]
            + [f"precision@{k}" for k in pct_keys]
            + ["Brier", "ECE", "n", "positives", "positive rate"])
    rows = []
    for name, m in metrics.items():
        c = m["counts"]
        cells = ([m["roc_auc"], m["pr_auc"], m["best_f1"], m["threshold"]]
                 + [m["precision_at_top_k"][k] for k in pct_keys]
                 + [m["brier"], m["ece"], c["n"], c["positives"], c["positive_rate"]])
        rows.append("<tr><td>" + esc(name) + "</td>"
                    + "".join(f"<td>{esc(_fmt(v))}</td>" for v in cells) + "</tr>")
    notes = [f"<li><b>{esc(name)}</b>: {esc(note)}</li>"
             for name, m in metrics.items() for note in m["notes"]]
    meta_rows = [
        f"<tr><td>{esc(str(k))}</td><td><code>"
        f"{esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</code></td></tr>"
        for k, v in meta.items()
    ]
    figures = []
    for name, caption in PLOTS.items():
        b64 = base64.b64encode((out / name).read_bytes()).decode("ascii")
        figures.append(
            f'<figure id="{esc(name.removesuffix(".png"))}">'
            f'<img src="data:image/png;base64,{b64}" alt="{esc(caption)}">'
            f'<figcaption>{esc(caption)} (<a href="{esc(name)}">{esc(name)}</a>)</figcaption>'
            "</figure>"
        )
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Metrics</h2>",
        "<table><thead><tr><th>model</th>"
        + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        *(["<h3>Notes</h3><ul>", *notes, "</ul>"] if notes else []),
        '<p>Raw numbers: <a href="metrics.json">metrics.json</a>.</p>',
        "<h2>Plots</h2>",
        *figures,
        "<h2>Run</h2>",
        "<table><tbody>",
        *(meta_rows or ["<tr><td>(none)</td><td></td></tr>"]),
        "</tbody></table>",
        "</body></html>",
        "",
    ])
