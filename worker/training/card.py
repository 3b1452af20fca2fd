"""The model card (``README.md`` of a trained model directory) and ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["model_card", "write_json"]

ROWS = (("bert", "BERT encoder + head"),
        ("frozen", "the same model with the encoder frozen"),
        ("features_only", "ablation: the same head, context features only"),
        ("baseline", "GBDT baseline (HistGradientBoosting)"))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def model_card(config: dict, metrics: dict) -> str:
    """Markdown: what it is, data, label, metrics (BERT vs baseline), how to reproduce, caveats."""
    data, label, training = config["data"], config["label"], config["training"]
    window, split = config["window"], config["split"]
    encoder = config["encoder"].get("package") or "its copy in encoder/"
    pooled = training.get("window_model") == "pooled"
    linear = pooled or training.get("head") == "linear"
    n_features = len(config["feature_names"])
    if pooled:
        head = (f"a linear head over event vectors: each event's phrase (no age, price "
                f"{training['phrase_price']}) encoded once; per window the recency-weighted mean "
                f"(half-life {training['half_life_s']:g} s) and the newest event's vector, "
                f"{training['components']} principal components of each, the newest event's "
                f"cosine to the others, and the {n_features} context features")
    elif linear:
        head = (f"a linear head (logistic regression on the {n_features} context "
                f"features and the first {training.get('pca_components')} principal components "
                "of the window-text vectors)")
    else:
        head = (f"a fusion head (hidden {config['head']['hidden']}, dropout "
                f"{config['head']['dropout']}) over the window text and the context features")
    lines = [
        f"# {config['name']} {config['version']}",
        "",
        "Purchase-intent model for intent-worker: a BERT text encoder "
        f"({encoder}, {config['pooling']}-pooled, {training['mode']}) and {head}. "
        "`baseline.joblib` holds a GBDT baseline "
        "trained on the same examples, kept for comparison only (the worker does not use it).",
        f"Created {config['created']}.",
        "",
        "## Data",
        "",
        f"- source: `{data['source']}` ({data['fingerprint']})",
        f"- {data['events']:,} events of {data['users']:,} users, "
        f"{data['first_ts']} to {data['last_ts']}; rejected lines: {data['rejected'] or 'none'}, "
        f"duplicate event ids: {data['duplicates']}",
        f"- windows: at most {window['max_events']} events spanning at most "
        f"{window['seconds']} s (the worker's settings at training time)",
        "",
        "## Label",
        "",
        f"`{label['name']}`: {label['definition']}",
        "",
        "## Examples and splits",
        "",
        f"Users are split by a stable hash (`user_split`, seed `{split['seed']}`, val "
        f"{split['val_frac']}, test {split['test_frac']}); no user is in two parts.",
        "",
        "| part | examples | positives | positive rate | users |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, c in metrics["counts"].items():
        if isinstance(c, dict) and c.get("examples"):
            lines.append(f"| {part} | {c['examples']:,} | {c['positives']:,} | "
                         f"{_num(c['positive_rate'])} | {c['users']:,} |")
    lines += ["", "## Metrics", ""]
    sections = [("val", "validation users (chose nothing for either model)"
                 if linear else "validation users (also used for early stopping of the BERT "
                 "head; the baseline stops on training users)")]
    if "test" in metrics:
        sections.append(("test", "held-out test users (never used for any choice)"))
    if "time_split" in metrics:
        sections.append(("time_split", "time split: both models refitted on examples before "
                         f"{metrics['time_split']['cut']} (train-part users; the "
                         "baseline stopped on an inner split of them), scored on the "
                         "examples after it (all users; report only)"))
    for key, title in sections:
        block = metrics.get(key, {})  # no validation users: no block
        if "bert" not in block:
            lines += [f"**{title}**: skipped ({block.get('skipped', 'no examples')})", ""]
            continue
        lines += [f"**{title}**: {block['bert']['n']:,} examples, "
                  f"{block['bert']['positives']} positives", "",
                  "| model | ROC-AUC | PR-AUC | Brier |", "|---|---:|---:|---:|"]
        for model, name in ROWS:
            m = block.get(model)
            if m is not None:
                lines.append(f"| {name} | {_num(m['roc_auc'])} | {_num(m['pr_auc'])} | "
                             f"{_num(m['brier'])} |")
        ci = block.get("bootstrap") or {}
        if ci.get("pr_auc_diff_bert_minus_baseline_ci95"):
            lo, hi = ci["pr_auc_diff_bert_minus_baseline_ci95"]
            lines += ["", f"PR-AUC difference BERT - baseline, 95% user bootstrap interval: "
                      f"[{lo:+.3f}, {hi:+.3f}]"]
        lines.append("")
    if pooled:
        info = training.get("pooled") or {}
        phrases = training.get("phrases") or {}
        variance = {k: sum(v) for k, v in (info.get("explained_variance_ratio") or {}).items()}
        how = (
            f"Mode {training['mode']}, pooled window model: {phrases.get('distinct_phrases', '?')} "
            f"distinct event phrases over {phrases.get('events_in_windows', '?')} window events "
            "encoded once (vectors rounded to float16, as the worker stores them), "
            "layer-normalised; per window the statistics above "
            "(`worker.model.pooled.pool`, the serving code); principal axes fitted on the "
            f"training users (variance kept: mean {variance.get('mean', 0):.0%}, newest "
            f"{variance.get('newest', 0):.0%}); everything standardised and fitted by "
            f"scikit-learn LogisticRegression (L2, C {training['l2_c']}, no class weights: "
            "scores are probabilities at the training base rate). Projection, scaling and "
            "coefficients are folded into `pooled.safetensors` (weights on the full vectors). "
            "No epochs, no early stopping: the validation users choose nothing for this model. "
            "The ablation row refits the same head without the vectors.")
        tuning = (metrics.get("training") or {}).get("finetune")
        if tuning:
            how += (f" Then fine-tuned end to end (encoder lr {training.get('encoder_lr')}), "
                    f"early-stopped on the inner hold-out users of the training users: best "
                    f"epoch {tuning.get('best_epoch')} (0: the frozen fit kept); the encoder is "
                    "saved in encoder/.")
    elif linear:
        info = training.get("linear") or {}
        variance = sum(info.get("explained_variance_ratio") or [])
        how = (
            f"Mode {training['mode']}, linear head: the text vectors standardised as the head's "
            f"LayerNorm does, projected on their first {training['pca_components']} principal "
            f"axes (fitted on the training users; {variance:.0%} of the variance), concatenated "
            "with the context features, standardised, and fitted by scikit-learn "
            f"LogisticRegression (L2, C {training['l2_c']}, no class weights: scores are "
            "probabilities at the training base rate without a correction). Projection, "
            "scaling and coefficients are folded into one linear map of [LN(text), features], "
            "stored in the fusion-head format (hidden 2: GELU(z) - GELU(-z) = z, so the "
            "worker scores it with the same code). No epochs, no early stopping: the "
            "validation users choose nothing for this model.")
    else:
        how = (
            f"Mode {training['mode']}; AdamW lr {training['lr']}, weight decay "
            f"{training['weight_decay']}, batch {training['batch_size']}, at most "
            f"{training['epochs']} epochs, patience {training['patience']}, best epoch "
            f"{training['best_epoch']}; BCE with pos_weight {training['pos_weight']:.2f}, then "
            "the output bias shifted by -log(pos_weight) so scores are probabilities at the "
            f"base rate; seed {training['seed']}.")
    lines += _cv_lines(metrics.get("user_cv"))
    lines += _reference_lines(config.get("score_reference"))
    lines += [
        "## Training",
        "",
        how,
        "",
        "The baseline: scikit-learn HistGradientBoostingClassifier on the same context "
        "features (newest product, session and recent-activity features included), "
        "and the newest event's category, "
        "top-level category and brand as categorical features (`baseline.json` lists them), "
        "balanced "
        f"class weights, {_baseline_trees(metrics['training']['baseline'])}, prior-corrected "
        "(p / (p + w (1 - p)), w the class-weight ratio) so its scores are probabilities at "
        "the base rate. The validation users chose nothing for it.",
        "",
        "## Reproduce",
        "",
        "```",
        training["command"],
        "```",
        "",
        "## Caveats",
        "",
        "- Small data: PR-AUC on a few dozen positives moves by several points between "
        "splits; read the bootstrap interval, not the third decimal.",
        ("- Neither model made a choice on the validation users (the baseline's number of "
         "trees comes from training users), but the head's settings (C, components) were "
         "picked earlier on user splits of this data; a test split (`test_frac`) or held-out "
         "data says more."
         if linear else
         "- Validation users chose the BERT head's stopping epoch (not the baseline's trees), "
         "so its figures are slightly optimistic; a test split (`test_frac`) or held-out "
         "data says more."),
        "- Sessions still open at the end of the data are censored: examples whose horizon "
        "runs past the last event are left out, so the last minutes of the data yield none.",
        "- REES46 text is category, brand and price only (no titles, queries or reviews): "
        "what the encoder adds is mostly which category and brand, which the baseline also "
        "gets as categorical features.",
        "- Scores are calibrated to the training base rate; a shop with another purchase rate "
        "needs recalibration before the scores are read as probabilities.",
        "",
    ]
    return "\n".join(lines)


def _cv_lines(cv: dict | None) -> list[str]:
    """The k-fold-by-user comparison: per-fold PR-AUC, means and the paired difference."""
    if not cv:
        return []
    title = (f"**{cv['folds']}-fold cross-validation by user** (seed `{cv['seed']}`; both "
             "models refitted on each fold's other users, the baseline stopped on an inner "
             "split of those; the fold's users score both"
             + (")" if "nothing" in cv.get("bert_stopped_on", "nothing") else
                " and early-stop the BERT head)"))
    if "skipped" in cv:
        return [f"{title}: skipped ({cv['skipped']})", ""]
    lines = [title + ":", "", "| model | PR-AUC mean ± sd | ROC-AUC mean ± sd | Brier mean |",
             "|---|---:|---:|---:|"]
    for model, name in ROWS:
        m = cv.get(model)
        if m is None:
            continue
        lines.append(f"| {name} | {m['pr_auc']['mean']:.3f} ± {m['pr_auc']['sd']:.3f} | "
                     f"{m['roc_auc']['mean']:.3f} ± {m['roc_auc']['sd']:.3f} | "
                     f"{m['brier']['mean']:.3f} |")
    lines.append("")
    for other, label in (("baseline", "baseline"), ("frozen", "frozen encoder"),
                         ("features_only", "the ablation")):
        d = cv.get(f"pr_auc_diff_bert_minus_{other}")
        if d is None:
            continue
        per_fold = ", ".join(f"{r['bert']['pr_auc'] - r[other]['pr_auc']:+.3f}"
                             for r in cv["per_fold"])
        lines += [f"PR-AUC difference BERT - {label}: mean {d['mean']:+.3f}, 95% t interval "
                  f"over folds [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], ahead on "
                  f"{d['folds_bert_ahead']} of {d['folds_compared']} folds (per fold: "
                  f"{per_fold}).", ""]
    return lines


def _reference_lines(reference: dict | None) -> list[str]:
    """The score reference the worker's drift (PSI) compares served scores with."""
    if not reference:
        return ["**Score reference**: none (no validation users); the worker reports no "
                "score drift for this model.", ""]
    edges = ", ".join(f"{e:.4g}" for e in reference["edges"]) or "none (one bin)"
    shares = ", ".join(f"{s:.3f}" for s in reference["shares"])
    return [f"**Score reference** (`score_reference` in `config.json`; the worker's score drift, "
            f"`intent_score_psi`, compares served scores with it): n {reference['n']:,} "
            f"scores of the {reference['source']}; {len(reference['shares'])} bins, edges "
            f"{edges}; shares {shares}.", ""]


def _baseline_trees(info: dict) -> str:
    """How many trees the baseline has and what chose that number."""
    if info.get("scoring") is None:
        return f"{info['n_iter']} trees ({info.get('stopped_on', 'no early stopping')})"
    return (f"{info['n_iter']} trees: the best {info['scoring']} on the users held out of an "
            f"inner split of the training users (seed `{info['inner_split']['seed']}`, "
            f"{info['inner_split']['stop']['users']:,} of "
            f"{info['inner_split']['stop']['users'] + info['inner_split']['fit']['users']:,} "
            "users), then refitted on all training users with that many trees")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
