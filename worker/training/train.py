"""``train``: events -> labelled examples -> user split -> BERT model + GBDT baseline
-> a model directory with ``metrics.json``, a model card and the baseline.

Two window models (``window_model``):

- ``pooled`` (the default): each distinct event phrase is encoded once by the frozen encoder
  and a linear head is fitted on pooled statistics of the windows' event vectors and the
  context features (:mod:`worker.training.pooled`); the worker then encodes only phrases it
  has never seen. The cross-validation report includes the ablation: the same head on the
  context features alone.
- ``text``: the window rendered as one text with ages. Frozen encoder: every distinct window
  text is embedded once, then only the head is fitted: the linear head
  (:mod:`worker.training.linear`) or, with ``head="mlp"``, the fusion MLP trained by AdamW with
  early stopping. ``finetune=True`` trains encoder and MLP head end to end (slow on a CPU).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset.examples import (
    DEFAULT_HORIZON_S,
    DEFAULT_MAX_EVENTS,
    DEFAULT_WINDOW_SECONDS,
    Example,
    LabelSpec,
    build_examples,
)
from worker.dataset.loading import LoadResult, events_fingerprint
from worker.dataset.split import DEFAULT_SPLIT_SEED, time_split, user_split
from worker.events import format_ts
from worker.features import FEATURE_NAMES, build_input
from worker.features.window import by_event_time
from worker.model.config import (
    DEFAULT_ENCODER_PACKAGE,
    DataSection,
    LabelSection,
    ModelConfig,
    SplitSection,
    WindowModelSection,
    WindowSection,
)
from worker.model.modeldir import ENCODER_PACKAGES, package_dir, save_model_dir, swap_in_dir
from worker.model.reference import ScoreReference
from worker.training.baseline import fit_baseline
from worker.training.card import model_card, write_json
from worker.training.linear import DEFAULT_C, DEFAULT_COMPONENTS
from worker.training.metrics import binary_metrics, count_summary, paired_bootstrap, paired_t
from worker.training.pooled import DEFAULT_HALF_LIFE_S, DEFAULT_POOLED_COMPONENTS, PooledRun

__all__ = ["TrainReport", "train"]

log = logging.getLogger(__name__)

DEFAULT_NAME = "intent-minilm"
# Mode defaults: (epochs, batch_size, head lr)
FROZEN_DEFAULTS = (60, 128, 1e-4)
FINETUNE_DEFAULTS = (3, 16, 3e-4)


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What ``train`` did: where the model is, the counts and metrics, seconds per stage."""

    out_dir: Path
    name: str
    version: str
    counts: dict[str, Any]
    metrics: dict[str, Any]
    best_epoch: int
    times: dict[str, float] = field(default_factory=dict)


def train(
    events: LoadResult | Sequence[dict], *, out_dir: str | os.PathLike[str],
    name: str = DEFAULT_NAME, version: str | None = None,
    encoder_dir_or_package: str | os.PathLike[str] = DEFAULT_ENCODER_PACKAGE,
    finetune: bool = False, epochs: int | None = None, batch_size: int | None = None,
    lr: float | None = None, encoder_lr: float = 2e-5, weight_decay: float = 0.1,
    seed: int = 0, horizon_s: int = DEFAULT_HORIZON_S, max_events: int = DEFAULT_MAX_EVENTS,
    window_seconds: int = DEFAULT_WINDOW_SECONDS, patience: int = 10, head_hidden: int = 16,
    head_dropout: float = 0.5, input_dropout: float = 0.5, pos_weight: float | None = None,
    val_frac: float = 0.2, test_frac: float = 0.0, split_seed: str = DEFAULT_SPLIT_SEED,
    time_frac: float | None = 0.2, cv_folds: int | None = 5, max_tokens: int = 128,
    max_chars: int = 768,
    device: str = "cpu", embedding_cache: str | os.PathLike[str] | None = None,
    overwrite: bool = False, progress: bool = True, command: str | None = None,
    head: str | None = None, pca_components: int = DEFAULT_COMPONENTS, l2_c: float = DEFAULT_C,
    window_model: str = "pooled", pooled_components: int = DEFAULT_POOLED_COMPONENTS,
    half_life_s: float = DEFAULT_HALF_LIFE_S, phrase_price: str = "bucket",
    phrase_max_tokens: int = 64,
) -> TrainReport:
    """Train and write a model directory at ``out_dir``; see the module docstring.

    ``window_model``: ``pooled`` (the default; ``pooled_components``, ``half_life_s``,
    ``phrase_price``, ``phrase_max_tokens`` and ``l2_c`` apply) or ``text`` (the options below).

    ``head``: ``linear`` (the default with a frozen encoder; ``pca_components`` and ``l2_c``
    apply) or ``mlp`` (the default, and the only choice, when fine-tuning; the epoch, lr,
    dropout and patience settings apply). The linear head is the default because on
    user-split comparisons with the baseline it ranks at least as well as the MLP head
    with far fewer parameters (docs/benchmarks.md, "Model selection", has the figures).

    The MLP head's defaults are small and heavily regularised (hidden 16, dropout 0.5 on
    the hidden layer and on the text vectors, weight decay 0.1, lr 1e-4): on a few hundred
    positives a larger or faster head memorises the training users within an epoch.

    ``events``: a :class:`LoadResult` (its file fingerprint is recorded) or normalised
    events (fingerprinted in memory). ``pos_weight`` None: negatives / positives of the
    training part. ``time_frac`` None or 0 skips the time-split report. ``cv_folds`` (None or 0:
    skip): both models are also refitted on ``cv_folds`` folds of the non-test users (fold
    ``k`` validates, the rest fit) and compared fold by fold: the mean over folds says more
    than the one validation split. ``embedding_cache``:
    an ``.npz`` file of text vectors reused across runs (frozen mode).
    """
    call = {k: v for k, v in locals().items() if k not in ("events", "progress", "command")}
    from worker.training.bert import BertRun, BertSettings

    if window_model not in ("pooled", "text"):
        raise ValueError(f"window_model must be pooled or text, got {window_model!r}")
    if window_model == "pooled" and head is not None:
        raise ValueError("head applies to the text window model (window_model='text'); the "
                         "pooled model has its own linear head")
    head = head or ("mlp" if finetune else "linear")
    if head not in ("linear", "mlp"):
        raise ValueError(f"head must be linear or mlp, got {head!r}")
    if head == "linear" and finetune:
        raise ValueError("the linear head needs a frozen encoder (use head='mlp' to fine-tune)")

    t_start = time.perf_counter()
    times: dict[str, float] = {}
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (pass overwrite=True to replace it)")
    data = _data_summary(events)
    event_list = events.events if isinstance(events, LoadResult) else list(events)
    label = LabelSpec(horizon_s=horizon_s)

    t0 = time.perf_counter()
    examples = build_examples(event_list, horizon_s=horizon_s, max_events=max_events,
                              window_seconds=window_seconds)
    parts = {p: [i for i, e in enumerate(examples)
                 if user_split(e.user_id, seed=split_seed, val_frac=val_frac,
                               test_frac=test_frac) == p] for p in ("train", "val", "test")}
    labels = np.array([e.label for e in examples], dtype=int)
    counts = {p: count_summary(labels[idx].tolist(), [examples[i].user_id for i in idx])
              for p, idx in parts.items()}
    counts["all"] = count_summary(labels.tolist(), [e.user_id for e in examples])
    times["examples_s"] = time.perf_counter() - t0
    log.info("examples: %s", counts)
    if counts["train"]["positives"] == 0 or counts["train"]["positives"] == len(parts["train"]):
        raise ValueError(f"the training part needs both classes: {counts['train']}")

    if window_model == "pooled":
        inputs = [build_input(e.window, max_chars=0, phrase_price=phrase_price)  # type: ignore[arg-type]
                  for e in examples]
        pooled_run = PooledRun(_encoder_dir(encoder_dir_or_package), inputs, labels,
                               components=pooled_components, c=l2_c, half_life_s=half_life_s,
                               phrase_max_tokens=phrase_max_tokens, device=device,
                               encoder_name=str(encoder_dir_or_package))
        times["embed_s"] = pooled_run.prepare()
        t0 = time.perf_counter()
        main = pooled_run.fit(parts["train"])
        predict = main.predict
        fitters: dict[str, Fitter] = {
            "bert": lambda fit, stop: (pooled_run.fit(fit).predict, {}),
            "features_only": lambda fit, stop: (pooled_run.fit(fit, text=False).predict, {})}
        stopped_on = "nothing: the pooled head has no epochs and no early stopping"
        best_epoch, fit_record = 0, {}
        tuned = None
        if finetune:
            tune = _PooledTuning(_encoder_dir(encoder_dir_or_package), inputs, labels,
                                 [e.user_id for e in examples], split_seed=split_seed,
                                 components=pooled_components, c=l2_c, half_life_s=half_life_s,
                                 phrase_max_tokens=phrase_max_tokens, phrase_price=phrase_price,
                                 epochs=epochs, encoder_lr=encoder_lr, seed=seed, device=device)
            tuned = tune.fit(parts["train"])
            predict = tuned.predict
            fitters = {"bert": tune.fitter, "frozen": fitters["bert"],
                       "features_only": fitters["features_only"]}
            stopped_on = ("the inner hold-out users of each fit's users (best epoch by "
                          "PR-AUC, the frozen fit included)")
            best_epoch = int(tuned.info.get("best_epoch", 0))
            fit_record = {"finetune": tuned.info}
        times["fit_bert_s"] = time.perf_counter() - t0
        text_dim = pooled_run.text_dim
    else:
        d_epochs, d_batch, d_lr = FINETUNE_DEFAULTS if finetune else FROZEN_DEFAULTS
        settings = BertSettings(
            epochs=epochs or d_epochs, batch_size=batch_size or d_batch, lr=lr or d_lr,
            encoder_lr=encoder_lr, weight_decay=weight_decay, patience=patience, seed=seed,
            input_dropout=input_dropout, pos_weight=pos_weight, head_hidden=head_hidden,
            head_dropout=head_dropout, max_tokens=max_tokens, max_chars=max_chars,
            finetune=finetune, device=device, head=head, pca_components=pca_components,
            l2_c=l2_c,
        )
        inputs = [build_input(e.window, max_chars=max_chars) for e in examples]
        run = BertRun(_encoder_dir(encoder_dir_or_package), inputs, labels, settings,
                      progress=progress, embedding_cache=embedding_cache)
        times["embed_s"] = run.prepare()
        t0 = time.perf_counter()
        bert = run.fit(parts["train"], parts["val"])
        times["fit_bert_s"] = time.perf_counter() - t0
        predict = bert.predict

        def refit(fit: Sequence[int], stop: Sequence[int]) -> tuple[ScoreFn, dict[str, Any]]:
            result = run.fit(fit, stop, progress=False, fresh=True)
            return result.predict, {"bert_best_epoch": result.fit.best_epoch}

        fitters = {"bert": refit}
        stopped_on = _bert_stopped_on(head)
        best_epoch = bert.fit.best_epoch
        fit_record = {"best_epoch": bert.fit.best_epoch, "epochs_run": bert.fit.epochs_run,
                      "history": bert.fit.history}
        text_dim = run.text_dim

    t0 = time.perf_counter()
    baseline = fit_baseline([examples[i] for i in parts["train"]], split_seed=split_seed,
                            random_state=seed)
    times["fit_baseline_s"] = time.perf_counter() - t0

    metrics: dict[str, Any] = {"label": label.to_json(), "counts": counts}
    scores = {part: predict(idx) for part, idx in parts.items() if part != "train" and idx}
    for part, part_scores in scores.items():
        idx = parts[part]
        metrics[part] = _compare(examples, idx, part_scores,
                                 baseline.predict_proba([examples[i].window for i in idx]), seed)
    reference = _score_reference(scores.get("val"), counts["val"], split_seed)
    if time_frac:
        t0 = time.perf_counter()
        metrics["time_split"] = _time_report(fitters["bert"], examples, time_frac, horizon_s,
                                             split_seed, val_frac, test_frac, seed)
        times["time_split_s"] = time.perf_counter() - t0
    if cv_folds:
        t0 = time.perf_counter()
        metrics["user_cv"] = _cv_report(fitters, stopped_on, examples, cv_folds, split_seed,
                                        val_frac, test_frac, seed)
        times["user_cv_s"] = time.perf_counter() - t0
    metrics["training"] = {"window_model": window_model, "head": head, **fit_record,
                           "bert": {"stopped_on": stopped_on},
                           "baseline": {k: baseline.info[k] for k in (
                               "n_iter", "scoring", "stopped_on", "inner_split", "params")}}

    t0 = time.perf_counter()
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    version = version or f"{created[:10].replace('-', '')}.{data['fingerprint'][7:15]}"
    mode = "fine-tuned" if finetune else "frozen-encoder"
    if window_model == "pooled":
        training: dict[str, Any] = {
            "mode": mode, "window_model": "pooled", "components": pooled_components,
            "encoder_lr": encoder_lr if finetune else None,
            "l2_c": l2_c, "half_life_s": half_life_s, "phrase_price": phrase_price,
            "phrase_max_tokens": phrase_max_tokens, "class_weight": None,
            "pooled": main.info, "phrases": pooled_run.info}
    elif head == "linear":
        training = {
            "mode": mode, "head": head, "pca_components": pca_components, "l2_c": l2_c,
            "class_weight": None, "linear": bert.info}
    else:
        training = {"mode": mode, "head": head, "epochs": settings.epochs,
                    "batch_size": settings.batch_size, "lr": settings.lr,
                    "weight_decay": weight_decay, "patience": patience,
                    "pos_weight": bert.pos_weight,
                    "prior_correction": -math.log(bert.pos_weight),
                    "input_dropout": input_dropout if not finetune else None,
                    "encoder_lr": encoder_lr if finetune else None,
                    "best_epoch": bert.fit.best_epoch, "epochs_run": bert.fit.epochs_run}
    training.update({"seed": seed, "encoder_source": str(encoder_dir_or_package),
                     "command": command or _snippet(data, call)})
    if window_model == "pooled":
        model_head: Any = main.head if tuned is None else tuned.head
        shape = {"window_model": WindowModelSection(
            kind="pooled", half_life_s=half_life_s, phrase_price=phrase_price,
            phrase_max_tokens=phrase_max_tokens)}
        encoder_ref: Any = (encoder_dir_or_package if isinstance(encoder_dir_or_package, str)
                            and encoder_dir_or_package in ENCODER_PACKAGES
                            else _encoder_dir(encoder_dir_or_package))
        if tuned is not None:
            encoder_ref = tuned.encoder
    else:
        model_head = bert.model.head
        shape = {"head_hidden": model_head.hidden, "head_dropout": model_head.drop.p}
        encoder_ref = run.encoder_for_saving(encoder_dir_or_package)
    config = ModelConfig(
        name=name, version=version, created=created, text_dim=text_dim, pooling="mean",
        max_tokens=max_tokens, max_chars=max_chars, feature_names=FEATURE_NAMES, **shape,
        trained=True,
        data=DataSection(**data),
        label=LabelSection(horizon_s=label.horizon_s, definition=label.definition),
        window=WindowSection(max_events=max_events, seconds=window_seconds),
        split=SplitSection(seed=split_seed, val_frac=val_frac, test_frac=test_frac),
        score_reference=reference, training=training, counts=counts,
        baseline={"files": ["baseline.joblib", "baseline.json"]})
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model_dir(staging, head=model_head, config=config, encoder=encoder_ref)
        baseline.save(staging)
        write_json(staging / "metrics.json", metrics)
        saved = (staging / "config.json").read_text(encoding="utf-8")
        import json

        (staging / "README.md").write_text(model_card(json.loads(saved), metrics),
                                           encoding="utf-8")
        swap_in_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    times["save_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - t_start
    log.info("model written to %s in %.1fs", out_dir, times["total_s"])
    return TrainReport(out_dir=out_dir, name=name, version=version, counts=counts,
                       metrics=metrics, best_epoch=best_epoch,
                       times={k: round(v, 3) for k, v in times.items()})


def _compare(examples: Sequence[Example], idx: Sequence[int], bert: np.ndarray,
             base: np.ndarray, seed: int) -> dict[str, Any]:
    y = [examples[i].label for i in idx]
    users = [examples[i].user_id for i in idx]
    return {"bert": binary_metrics(y, bert), "baseline": binary_metrics(y, base),
            "bootstrap": paired_bootstrap(y, {"bert": bert, "baseline": base}, users,
                                          seed=seed)}


def _score_reference(val_scores: np.ndarray | None, val_counts: dict[str, Any],
                     split_seed: str) -> ScoreReference | None:
    """The shipped model's score distribution on the validation users' examples (one score
    per example, as the worker's outcomes have one per scored non-purchase event); None
    without validation users."""
    if val_scores is None or not len(val_scores):
        log.warning("no validation users: the model directory gets no score reference, so "
                    "the worker reports no score drift for it")
        return None
    return ScoreReference.from_scores(
        val_scores.tolist(), source=f"validation users' examples (user_split seed "
        f"{split_seed!r}: {val_counts['examples']} examples of {val_counts['users']} users)")


def _bert_stopped_on(head: str) -> str:
    """What chose the BERT head's stopping point (the MLP head's best epoch)."""
    if head == "linear":
        return "nothing: the linear head has no epochs and no early stopping"
    return "the validation users (best epoch by PR-AUC; in user_cv the fold's users)"


def _time_report(fitter: Fitter, examples: list[Example], frac: float, horizon_s: int,
                 split_seed: str, val_frac: float, test_frac: float, seed: int) -> dict:
    """Refit both models on the train-part users' examples before a time cut and score every
    example after it. The baseline stops on an inner split of those fit users, as in the
    main fit; the val-part users' examples before the cut are passed to the BERT fit, which
    early-stops on them when it has epochs (the MLP head; the linear heads ignore them)."""
    position = {id(e): i for i, e in enumerate(examples)}
    before, after, cut = time_split(examples, frac, horizon_s=horizon_s)

    def part(e: Example) -> str:
        return user_split(e.user_id, seed=split_seed, val_frac=val_frac, test_frac=test_frac)

    fit_idx = [position[id(e)] for e in before if part(e) == "train"]
    stop_idx = [position[id(e)] for e in before if part(e) == "val"]
    test_idx = [position[id(e)] for e in after]
    out: dict[str, Any] = {"cut": format_ts(cut), "frac": frac,
                           "counts": {"fit": count_summary([examples[i].label for i in fit_idx],
                                                           [examples[i].user_id for i in fit_idx]),
                                      "bert_early_stopping": count_summary(
                                          [examples[i].label for i in stop_idx],
                                          [examples[i].user_id for i in stop_idx]),
                                      "after": count_summary(
                                          [examples[i].label for i in test_idx],
                                          [examples[i].user_id for i in test_idx])}}
    fit_labels = {examples[i].label for i in fit_idx}
    if not test_idx or fit_labels != {0, 1}:
        out["skipped"] = "not enough examples on one side of the cut"
        return out
    predict, info = fitter(fit_idx, stop_idx)
    baseline = fit_baseline([examples[i] for i in fit_idx], split_seed=split_seed,
                            random_state=seed)
    out.update(_compare(examples, test_idx, predict(test_idx),
                        baseline.predict_proba([examples[i].window for i in test_idx]), seed))
    out["fits"] = {**info, "baseline_n_iter": baseline.info["n_iter"],
                   "baseline_stopped_on": baseline.info["stopped_on"]}
    return out


def _cv_report(fitters: dict[str, Fitter], stopped_on: str, examples: list[Example],
               folds: int, split_seed: str, val_frac: float, test_frac: float,
               seed: int) -> dict[str, Any]:
    """Refit the models (``fitters``: ``bert`` and, for the pooled model, the
    ``features_only`` ablation) and the baseline on each of ``folds`` user folds (test users
    left out) and compare them on the fold's users: per-fold metrics, means, and the paired
    PR-AUC differences of ``bert`` to each other model. The baseline stops on an inner split of
    the fold's fit users, never on the scored fold (the MLP head, not the linear ones,
    early-stops on the scored fold)."""
    from worker.dataset.split import user_fold

    pool = [i for i, e in enumerate(examples)
            if user_split(e.user_id, seed=split_seed, val_frac=val_frac,
                          test_frac=test_frac) != "test"]
    fold_of = {i: user_fold(examples[i].user_id, seed=split_seed, folds=folds) for i in pool}
    rows = []
    for k in range(folds):
        fit_idx = [i for i in pool if fold_of[i] != k]
        val_idx = [i for i in pool if fold_of[i] == k]
        y_fit = {examples[i].label for i in fit_idx}
        y_val = {examples[i].label for i in val_idx}
        if y_fit != {0, 1} or y_val != {0, 1}:
            continue
        y = [examples[i].label for i in val_idx]
        row: dict[str, Any] = {"fold": k}
        for name, fitter in fitters.items():
            predict, _ = fitter(fit_idx, val_idx)
            row[name] = binary_metrics(y, predict(val_idx))
        baseline = fit_baseline([examples[i] for i in fit_idx], split_seed=split_seed,
                                random_state=seed)
        row["baseline"] = binary_metrics(y, baseline.predict_proba(
            [examples[i].window for i in val_idx]))
        row["baseline_n_iter"] = baseline.info["n_iter"]
        rows.append(row)
    out: dict[str, Any] = {"folds": folds, "seed": split_seed, "per_fold": rows,
                           "baseline_stopped_on": "inner split of each fold's fit users",
                           "bert_stopped_on": stopped_on}
    if len(rows) < 2:
        out["skipped"] = "fewer than two folds hold both classes"
        return out
    models = [*fitters, "baseline"]
    for model in models:
        for metric in ("pr_auc", "roc_auc", "brier"):
            values = np.array([r[model][metric] for r in rows], dtype=float)
            out.setdefault(model, {})[metric] = {"mean": float(values.mean()),
                                                 "sd": float(values.std(ddof=1))}
    for other in models[1:]:
        d = paired_t([r["bert"]["pr_auc"] - r[other]["pr_auc"] for r in rows])
        out[f"pr_auc_diff_bert_minus_{other}"] = {
            "mean": d["mean"], "ci95": d["ci95"], "folds_bert_ahead": d["won"],
            "folds_compared": d["n"]}
    return out


def _data_summary(events: LoadResult | Sequence[dict]) -> dict[str, Any]:
    if isinstance(events, LoadResult):
        summary = events.summary()
    else:
        ordered = by_event_time(events)
        summary = {"source": "<in memory>", "format": "",
                   "fingerprint": events_fingerprint(ordered), "lines": len(ordered),
                   "events": len(ordered),
                   "users": len({e["user_id"] for e in ordered}), "rejected": {},
                   "duplicates": 0, "first_ts": ordered[0]["ts"] if ordered else None,
                   "last_ts": ordered[-1]["ts"] if ordered else None}
    for key in ("first_ts", "last_ts"):
        if summary[key] is not None:
            summary[key] = format_ts(summary[key])
    return summary


def _encoder_dir(source: str | os.PathLike[str]) -> Path:
    if isinstance(source, str) and source in ENCODER_PACKAGES:
        return package_dir(source)
    return Path(source)


def _snippet(data: dict[str, Any], call: dict[str, Any]) -> str:
    """A Python call that repeats this training (arguments that differ from the defaults)."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()}
    args = ", ".join(f"{k}={os.fspath(v)!r}" if isinstance(v, os.PathLike) else f"{k}={v!r}"
                     for k, v in call.items() if k == "out_dir" or v != defaults.get(k))
    if not data["format"]:
        return f"from worker.training import train\ntrain(events, {args})  # events in memory"
    return ("from worker.dataset import load_events\nfrom worker.training import train\n"
            f"train(load_events({data['source']!r}, {data['format']!r}), {args})")


ScoreFn = Callable[[Sequence[int]], np.ndarray]
# (fit rows, early-stopping rows) -> (predict, facts about the fit)
Fitter = Callable[[Sequence[int], Sequence[int]], tuple[ScoreFn, dict[str, Any]]]


@dataclass(slots=True)
class _Tuned:
    encoder: Any
    head: Any
    predict: ScoreFn
    info: dict[str, Any]


class _PooledTuning:
    """Fine-tuned pooled fits (:func:`~worker.training.pooled_finetune.finetune_pooled`) on
    given rows: early stopping on the inner hold-out users of those rows' users, never on
    the rows a report scores; each fit scored through the serving path."""

    def __init__(self, encoder_dir: Path, inputs: Sequence[Any], labels: np.ndarray,
                 user_ids: Sequence[str], *, split_seed: str, components: int, c: float,
                 half_life_s: float, phrase_max_tokens: int, phrase_price: str,
                 epochs: int | None, encoder_lr: float, seed: int, device: str) -> None:
        self.encoder_dir, self.inputs, self.labels = encoder_dir, inputs, labels
        self.user_ids, self.split_seed = user_ids, split_seed
        self.shape = {"half_life_s": half_life_s, "phrase_max_tokens": phrase_max_tokens}
        self.phrase_price = phrase_price
        self.options: dict[str, Any] = {
            "components": components, "c": c, "encoder_lr": encoder_lr, "seed": seed,
            "device": device, **self.shape, **({"epochs": epochs} if epochs else {})}

    def fit(self, rows: Sequence[int]) -> _Tuned:
        from worker.training.pooled_finetune import finetune_pooled, inner_indices, serving_model

        train_idx, hold_idx = inner_indices(self.user_ids, rows, seed=self.split_seed)
        encoder, head, info = finetune_pooled(self.encoder_dir, self.inputs, self.labels,
                                              train_idx, hold_idx, **self.options)
        model = serving_model(encoder, head, phrase_price=self.phrase_price, **self.shape)
        inputs = self.inputs

        def predict(idx: Sequence[int]) -> np.ndarray:
            return np.asarray(model.score([inputs[i] for i in idx]), dtype=float)

        return _Tuned(encoder, head, predict, info)

    def fitter(self, fit: Sequence[int], stop: Sequence[int]) -> tuple[ScoreFn, dict[str, Any]]:
        tuned = self.fit(fit)
        return tuned.predict, {"bert_best_epoch": tuned.info.get("best_epoch")}
