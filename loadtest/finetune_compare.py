"""The pooled window model with its encoder fine-tuned against the same model over the frozen
encoder, on ``train``'s folds by user: does fine-tuning pay?

    python -m loadtest.finetune_compare ../shared/data/rees46/events-dev.csv --format rees46 \
        --epochs 3 --batch-size 128 --head-lr 1e-3 --encoder-lr 2e-5 --patience 2 \
        --threads 2 --out docs/benchmarks/2026-12-05-finetune-pooled.json

**Cost.** On 2 CPU threads one epoch over a fold's ~5,760 inner training examples (batches of
128 windows: ~8,700 distinct-phrase passes, forward and backward through MiniLM-L6, about 68
a second) plus the hold-out scoring takes ~130 s; the rest of a fold (frozen fit, the
fine-tuning's frozen start, scoring, the refit) ~20 s. Three epochs keep the 5 folds within
about 35 minutes, the budget of the recorded run; that budget, not the hold-out users, chose
the epoch count (patience 2; the best epoch of the three, or the frozen start, is kept).

**Data.** Examples as ``train`` builds them (label horizon 600 s, the worker's window), inputs
with their event sequences (phrases with the price bucketed, as ``train`` renders them), the
shipped MiniLM encoder (or ``--encoder DIR``).

**Folds.** ``train``'s user cross-validation (``_cv_report``): users in ``--folds`` folds by
:func:`~worker.dataset.split.user_fold` with the split seed, no test users; fold ``k`` is
scored by models fitted on the other folds' users. No choice uses the scored users.

**Models**, per fold:

- ``frozen``: the pooled model as ``train`` fits it (:class:`~worker.training.pooled.PooledRun`:
  float16 vectors of the frozen encoder, ``k`` principal components, logistic regression on
  all the fit users; no epochs, no early stopping);
- ``finetuned``: :func:`~worker.training.pooled_finetune.finetune_pooled`: the frozen fit on
  the inner training users, then encoder and head trained end to end, early-stopped on the
  PR-AUC of the inner hold-out users of the fit users (:func:`inner_indices`, the split of
  :func:`~worker.dataset.split.inner_user_split`); scored through the serving path
  (:func:`~worker.training.pooled_finetune.serving_model`);
- ``finetuned_refit`` (unless ``--no-refit``): the fine-tuned encoder kept, the head fitted
  again as ``frozen`` is, on all the fit users (the hold-out users chose the epoch only).

**Summary.** Mean and sd of PR-AUC (average precision) and ROC-AUC over the folds; the paired
differences of ``finetuned`` and ``finetuned_refit`` to ``frozen`` with a 95 % Student t
interval over the folds and the folds won; seconds per fold of each model.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset.split import DEFAULT_SPLIT_SEED, user_fold, user_split
from worker.features import ModelInput

__all__ = ["MODELS", "Data", "compare", "fold_indices", "load", "main", "summary", "table"]

MODELS = ("frozen", "finetuned", "finetuned_refit")
FOLDS = 5
COMPONENTS = 8
C = 0.01
HALF_LIFE_S = 300.0
PHRASE_PRICE = "bucket"
PHRASE_MAX_TOKENS = 64


@dataclass(frozen=True)
class Data:
    """Per example: its model input (with the event sequence), label and user."""

    inputs: list[ModelInput]
    labels: np.ndarray
    users: list[str]


def load(path: Path, fmt: str, *, phrase_price: str = PHRASE_PRICE) -> Data:
    """Examples of an event file as ``train`` builds them, with their pooled-model inputs."""
    from worker.dataset import (
        DEFAULT_HORIZON_S,
        DEFAULT_MAX_EVENTS,
        DEFAULT_WINDOW_SECONDS,
        build_examples,
        load_events,
    )
    from worker.features import build_input

    events = load_events(path, fmt)
    examples = build_examples(events.events, horizon_s=DEFAULT_HORIZON_S,
                              max_events=DEFAULT_MAX_EVENTS, window_seconds=DEFAULT_WINDOW_SECONDS)
    inputs = [build_input(e.window, max_chars=0, phrase_price=phrase_price) for e in examples]
    return Data(inputs, np.array([e.label for e in examples], dtype=int),
                [e.user_id for e in examples])


def fold_indices(users: Sequence[str], *, folds: int = FOLDS, seed: str = DEFAULT_SPLIT_SEED
                 ) -> list[tuple[int, list[int], list[int]]]:
    """``(k, fit_idx, scored_idx)`` per fold, as ``train``'s user cross-validation builds them
    (its default split: ``val_frac`` 0.2, no test users)."""
    pool = [i for i, u in enumerate(users)
            if user_split(u, seed=seed, val_frac=0.2, test_frac=0.0) != "test"]
    fold_of = {i: user_fold(users[i], seed=seed, folds=folds) for i in pool}
    return [(k, [i for i in pool if fold_of[i] != k], [i for i in pool if fold_of[i] == k])
            for k in range(folds)]


def compare(data: Data, encoder_dir: Path, *, folds: int = FOLDS,
            seed: str = DEFAULT_SPLIT_SEED, max_folds: int | None = None, refit: bool = True,
            finetune: dict[str, Any] | None = None, components: int = COMPONENTS, c: float = C,
            half_life_s: float = HALF_LIFE_S, phrase_max_tokens: int = PHRASE_MAX_TOKENS,
            log: Callable[[str], None] = lambda s: None,
            on_fold: Callable[[dict[str, Any]], None] = lambda result: None) -> dict[str, Any]:
    """Per fold: the models' metrics on the fold's users, seconds, the fine-tuning summary.
    ``on_fold`` gets the result so far after each fold (a long run keeps what it finished)."""
    from worker.training.metrics import binary_metrics
    from worker.training.pooled import PooledRun
    from worker.training.pooled_finetune import finetune_pooled, inner_indices, serving_model

    finetune = dict(finetune or {})
    shape = {"components": components, "c": c, "half_life_s": half_life_s,
             "phrase_max_tokens": phrase_max_tokens}
    t0 = time.perf_counter()
    run = PooledRun(encoder_dir, data.inputs, data.labels, **shape)
    run.prepare()
    prepare_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"per_fold": rows, "prepare_s": round(prepare_s, 2),
                              "encoder_id": run.info.get("encoder_id"),
                              "distinct_phrases": run.info.get("distinct_phrases")}
    for k, fit_idx, scored_idx in fold_indices(data.users, folds=folds, seed=seed):
        if max_folds is not None and len(rows) >= max_folds:
            break
        y = data.labels[scored_idx]
        if len(set(data.labels[fit_idx].tolist())) < 2 or len(set(y.tolist())) < 2:
            continue
        scored = [data.inputs[i] for i in scored_idx]
        row: dict[str, Any] = {"fold": k, "seconds": {}}
        t0 = time.perf_counter()
        row["frozen"] = binary_metrics(y, run.fit(fit_idx).predict(scored_idx))
        row["seconds"]["frozen"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        train_idx, hold_idx = inner_indices(data.users, fit_idx, seed=seed)
        encoder, head, info = finetune_pooled(encoder_dir, data.inputs, data.labels, train_idx,
                                              hold_idx, **shape, **finetune)
        served = serving_model(encoder, head, half_life_s=half_life_s,
                               phrase_max_tokens=phrase_max_tokens)
        row["finetuned"] = binary_metrics(y, served.score(scored))
        row["seconds"]["finetuned"] = round(time.perf_counter() - t0, 2)
        row["finetune"] = {key: info[key] for key in ("best_epoch", "best_hold_pr_auc",
                                                      "epochs_run", "history", "rows",
                                                      "phrases_encoded_training")}
        if refit:
            t0 = time.perf_counter()
            predict = _refit(served, data, fit_idx, components=components, c=c)
            row["finetuned_refit"] = binary_metrics(y, predict(scored_idx))
            row["seconds"]["finetuned_refit"] = round(time.perf_counter() - t0, 2)
        row["counts"] = {"fit": len(fit_idx), "inner_train": len(train_idx),
                         "inner_hold": len(hold_idx), "scored": len(scored_idx),
                         "scored_positives": int(y.sum())}
        rows.append(row)
        log(f"fold {k}: " + ", ".join(
            f"{m} PR-AUC {row[m]['pr_auc']:.4f} ROC-AUC {row[m]['roc_auc']:.4f}"
            for m in MODELS if m in row)
            + f"; best epoch {info['best_epoch']}/{info['epochs_run']}; "
            + f"seconds {row['seconds']}")
        on_fold(result)
    return result


def _refit(served: Any, data: Data, fit_idx: Sequence[int], *, components: int, c: float
           ) -> Callable[[Sequence[int]], np.ndarray]:
    """The frozen-style head fitted on all the fit users over the fine-tuned encoder's
    float16 vectors (``served``: its serving model, whose vectors and pooling are used)."""
    from worker.model.pooled import PooledStats, layer_norm, pool
    from worker.training.pooled import fit_pooled_head

    index: dict[str, int] = {}
    rows = [[index.setdefault(p, len(index)) for p in item.events.phrases]  # type: ignore[union-attr]
            for item in data.inputs]
    vectors = served.vectors.vectors_here(list(index))
    stats = pool(rows, [i.events.ages_s for i in data.inputs], layer_norm(vectors),  # type: ignore[union-attr]
                 served.half_life_s)
    feats = np.array([i.features for i in data.inputs], dtype=np.float64)
    head, _ = fit_pooled_head(stats, feats, data.labels, fit_idx, components=components, c=c)

    def predict(idx: Sequence[int]) -> np.ndarray:
        ix = np.asarray(list(idx), dtype=int)
        part = PooledStats(stats.mean[ix], stats.newest[ix], stats.cos[ix])
        return 1.0 / (1.0 + np.exp(-head.logits(part, feats[ix])))

    return predict


def summary(rows: Sequence[dict[str, Any]], *, reference: str = "frozen") -> dict[str, Any]:
    """Means and sds per model; paired differences to ``reference`` (mean, 95 % t interval
    over the folds, folds won); seconds per fold."""
    from worker.training.metrics import paired_t

    models = [m for m in MODELS if rows and all(m in r for r in rows)]
    out: dict[str, Any] = {"folds": len(rows)}
    for model in models:
        entry: dict[str, Any] = {}
        for metric in ("pr_auc", "roc_auc"):
            values = np.array([r[model][metric] for r in rows], dtype=float)
            entry[metric] = {"mean": float(values.mean()),
                             "sd": float(values.std(ddof=1)) if len(values) > 1 else None}
        seconds = np.array([r["seconds"][model] for r in rows], dtype=float)
        entry["seconds_per_fold"] = float(seconds.mean())
        if model != reference:
            for metric in ("pr_auc", "roc_auc"):
                d = paired_t([r[model][metric] - r[reference][metric] for r in rows])
                entry[f"{metric}_minus_{reference}"] = {
                    "mean": d["mean"], "ci95": d["ci95"], "folds_won": d["won"],
                    "folds": d["n"]}
        out[model] = entry
    return out


def table(rows: Sequence[dict[str, Any]], summ: dict[str, Any]) -> str:
    """Markdown: PR-AUC / ROC-AUC per fold and model, the paired differences, the seconds."""
    models = [m for m in MODELS if m in summ]
    lines = ["| fold | " + " | ".join(f"{m} PR-AUC | {m} ROC-AUC" for m in models)
             + " | best epoch |",
             "|---|" + "---|---|" * len(models) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r[m]['pr_auc']:.4f} | {r[m]['roc_auc']:.4f}" for m in models)
        lines.append(f"| {r['fold']} | {cells} | {r['finetune']['best_epoch']}"
                     f"/{r['finetune']['epochs_run']} |")
    lines.append("")
    lines.append("| model | PR-AUC | ROC-AUC | PR-AUC - frozen [95 % CI] (won) "
                 "| ROC-AUC - frozen [95 % CI] (won) | s/fold |")
    lines.append("|---|---|---|---|---|---|")
    for m in models:
        s = summ[m]
        diffs = []
        for metric in ("pr_auc", "roc_auc"):
            d = s.get(f"{metric}_minus_frozen")
            if d is None:
                diffs.append("")
                continue
            ci = "" if d["ci95"] is None else f" [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            diffs.append(f"{d['mean']:+.4f}{ci} ({d['folds_won']}/{d['folds']})")
        lines.append(f"| {m} | {s['pr_auc']['mean']:.4f} | {s['roc_auc']['mean']:.4f} | "
                     f"{diffs[0]} | {diffs[1]} | {s['seconds_per_fold']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from worker.training import pooled_finetune as ft

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--format", default="rees46", choices=["rees46", "jsonl"])
    parser.add_argument("--encoder", type=Path, default=None,
                        help="encoder directory (default: the shipped MiniLM package)")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--max-folds", type=int, default=None,
                        help="stop after this many folds (timing runs)")
    parser.add_argument("--split-seed", default=DEFAULT_SPLIT_SEED)
    parser.add_argument("--epochs", type=int, default=ft.DEFAULT_EPOCHS)
    parser.add_argument("--batch-size", type=int, default=ft.DEFAULT_BATCH_SIZE)
    parser.add_argument("--head-lr", type=float, default=ft.DEFAULT_HEAD_LR)
    parser.add_argument("--encoder-lr", type=float, default=ft.DEFAULT_ENCODER_LR)
    parser.add_argument("--weight-decay", type=float, default=ft.DEFAULT_WEIGHT_DECAY)
    parser.add_argument("--patience", type=int, default=ft.DEFAULT_PATIENCE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--components", type=int, default=COMPONENTS)
    parser.add_argument("--no-refit", action="store_true",
                        help="skip the fine-tuned encoder with a head refitted on all fit users")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    from worker.model.config import DEFAULT_ENCODER_PACKAGE
    from worker.model.modeldir import package_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    encoder = args.encoder or package_dir(DEFAULT_ENCODER_PACKAGE)
    data = load(args.input, args.format)
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "head_lr": args.head_lr,
                "encoder_lr": args.encoder_lr, "weight_decay": args.weight_decay,
                "patience": args.patience, "seed": args.seed}
    command = "python -m loadtest.finetune_compare " + " ".join(
        sys.argv[1:] if argv is None else argv)

    def write(result: dict[str, Any], *, complete: bool) -> dict[str, Any]:
        summ = summary(result["per_fold"])
        if args.out:
            doc = _document(args, data, settings, result, summ, command,
                            total_s=time.perf_counter() - t0, complete=complete)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return summ

    result = compare(data, encoder, folds=args.folds, seed=args.split_seed,
                     max_folds=args.max_folds, refit=not args.no_refit, finetune=settings,
                     components=args.components, log=lambda s: print(s, flush=True),
                     on_fold=lambda partial: write(partial, complete=False))
    summ = write(result, complete=True)
    print(table(result["per_fold"], summ))
    print(f"{time.perf_counter() - t0:.0f}s")


def _document(args: argparse.Namespace, data: Data, settings: dict[str, Any],
              result: dict[str, Any], summ: dict[str, Any], command: str, *, total_s: float,
              complete: bool) -> dict[str, Any]:
    import torch

    return {"what": "pooled window model: fine-tuned encoder vs frozen encoder, "
                    "train's folds by user",
            "complete": complete, "command": command,
            "machine": {"torch_threads": args.threads, "platform": platform.platform(),
                        "torch": torch.__version__},
            "data": {"source": str(args.input), "examples": len(data.labels),
                     "positives": int(data.labels.sum()), "users": len(set(data.users)),
                     "distinct_phrases": result["distinct_phrases"],
                     "phrase_price": PHRASE_PRICE},
            "protocol": {"folds": args.folds, "split_seed": args.split_seed,
                         "frozen": "PooledRun.fit on all fit users (as train)",
                         "finetuned": "finetune_pooled from the frozen fit on inner training "
                                      "users, early-stopped on the PR-AUC of inner hold-out "
                                      "users of the fit users, scored through the serving path",
                         "finetuned_refit": "fine-tuned encoder, head refitted as frozen on "
                                            "all fit users",
                         "components": args.components, "C": C, "half_life_s": HALF_LIFE_S,
                         "phrase_max_tokens": PHRASE_MAX_TOKENS},
            "settings": settings, "encoder_id": result["encoder_id"],
            "prepare_s": result["prepare_s"], "total_s": round(total_s, 1),
            "summary": summ, "per_fold": result["per_fold"]}

if __name__ == "__main__":
    main()
