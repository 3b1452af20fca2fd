"""Candidate heads over many user splits and the time split: does a GBDT-based or blended
head generalise better than the shipped linear head?

    python -m loadtest.head_compare ../shared/data/rees46/events-dev.csv --format rees46 \
        --cache emb-cache.npz --out head-compare.json

**Splits.** For each of four salts, five folds by user (:func:`user_fold`): 20 splits, each
fold scored by models fitted on the other four (no user on both sides). Fold 0 of salt
``intent-v1`` is the shipped model's validation split. Then the time split of ``train``: fit
on the train-part users before the cut, score every example after it.

**Fairness.** Every choice a candidate makes (trees of a GBDT, the out-of-fold text score of a
stack) uses only its fit users, through inner user folds (salt ``<salt>/inner``), never the
scored users, except ``baseline``: the product's GBDT stopped early on the scored users
(:func:`fit_baseline_stopped_on`), kept to show how optimistic that is; ``baseline_inner``
is the product's GBDT as ``train`` fits it (:func:`fit_baseline`: stopped on inner users of
the fit part, refitted on all of them).

**Candidates** (serving inputs only: the 42 context features and the text vector, except the
two baselines, which also get the newest category and brand):

- ``linear``: the shipped head (:func:`fit_linear_head`: logistic regression, C 0.01, on the
  features and 4 principal components of the text vectors);
- ``gbdt``: HistGradientBoosting on the features;
- ``stack``: a small GBDT (7 leaves, 50 per leaf) on the features and an out-of-fold text
  logit (logistic regression on 4 principal components of the text vectors);
- ``blend``: the mean of the ``linear`` and ``gbdt`` logits;
- ``blend_stack``: the mean of the ``linear`` and ``stack`` logits.

Summary per candidate: mean and sd of PR-AUC and ROC-AUC over the 20 splits, splits won
against ``baseline`` and against ``linear``, the mean paired PR-AUC difference to each, the
time split and the recorded validation split. docs/benchmarks.md ("Model selection") has a run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset.examples import DEFAULT_HORIZON_S
from worker.dataset.split import DEFAULT_SPLIT_SEED, time_split, user_fold, user_split

SALTS = (DEFAULT_SPLIT_SEED, "alt-1", "alt-2", "alt-3")
FOLDS = 5
GBDT_PARAMS: dict[str, Any] = {"learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 15,
                               "min_samples_leaf": 20, "l2_regularization": 1.0}
STACK_PARAMS: dict[str, Any] = {**GBDT_PARAMS, "max_leaf_nodes": 7, "min_samples_leaf": 50}
ALL = ("baseline", "baseline_inner", "linear", "gbdt", "stack", "blend", "blend_stack")


@dataclass(frozen=True)
class Data:
    """Per example: raw text vector, context features, label, user; ``examples`` (the
    :class:`Example` objects) for the baselines and the time split, None in tests."""

    vectors: np.ndarray  # (n, dim) float32, as the encoder gives them
    features: np.ndarray  # (n, f) float32, as the head gets them
    labels: np.ndarray
    users: np.ndarray
    examples: Sequence[Any] | None = None

    @property
    def normed(self) -> np.ndarray:
        """The text vectors standardised over their dimensions (the head's LayerNorm)."""
        v = self.vectors.astype(np.float64)
        return (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + 1e-5)


Scores = Callable[[np.ndarray], np.ndarray]


class Candidates:
    """``fit(name, fit_idx, salt) -> scores(idx)``: ranking scores (logits or probabilities)."""

    def __init__(self, data: Data) -> None:
        self.d = data
        self.normed = data.normed
        self.x = data.features.astype(np.float64)

    def fit(self, name: str, fit_idx: np.ndarray, salt: str, stop_idx: np.ndarray) -> Scores:
        if name == "baseline":
            return self._baseline(fit_idx, stop_idx)
        if name == "baseline_inner":
            return self._baseline_inner(fit_idx, salt)
        if name == "linear":
            return self._linear(fit_idx)
        if name == "gbdt":
            return self._gbdt(fit_idx, salt)
        if name == "stack":
            return self._stack(fit_idx, salt)
        if name in ("blend", "blend_stack"):
            first = self._linear(fit_idx)
            second = self._gbdt(fit_idx, salt) if name == "blend" else self._stack(fit_idx, salt)
            return lambda idx: 0.5 * first(idx) + 0.5 * second(idx)
        raise ValueError(f"unknown candidate {name!r}; known: {ALL}")

    def _inner(self, idx: np.ndarray, salt: str) -> np.ndarray:
        return np.array([user_fold(u, seed=f"{salt}/inner", folds=FOLDS)
                         for u in self.d.users[idx]])

    def _baseline(self, fit_idx: np.ndarray, stop_idx: np.ndarray) -> Scores:
        """The product GBDT stopped on ``stop_idx`` (the scored users: optimistic)."""
        from worker.training.baseline import fit_baseline_stopped_on

        ex = self.d.examples
        if ex is None:
            raise ValueError("the baselines need the examples")
        model = fit_baseline_stopped_on([ex[i] for i in fit_idx], [ex[i] for i in stop_idx])
        return lambda idx: model.predict_proba([ex[i].window for i in idx])

    def _baseline_inner(self, fit_idx: np.ndarray, salt: str) -> Scores:
        """The product baseline as ``train`` fits it: stopped on the inner users of
        :meth:`_inner`'s fold 0 (the same users: one hash, salt ``<salt>/inner``), refitted
        on all fit users."""
        from worker.training.baseline import fit_baseline

        ex = self.d.examples
        if ex is None:
            raise ValueError("the baselines need the examples")
        base = fit_baseline([ex[i] for i in fit_idx], split_seed=salt)
        return lambda idx: base.predict_proba([ex[i].window for i in idx])

    def _linear(self, fit_idx: np.ndarray) -> Scores:
        import torch

        from worker.training.linear import fit_linear_head
        from worker.training.loops import head_logits

        text, feats = torch.from_numpy(self.d.vectors), torch.from_numpy(self.d.features)
        head, _ = fit_linear_head(text, feats, self.d.labels, fit_idx)
        return lambda idx: head_logits(head, text[idx], feats[idx]).numpy().astype(float)

    def _text(self, fit_idx: np.ndarray) -> Scores:
        """Logistic regression on the first 4 principal components of the text alone."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        pca = PCA(4, svd_solver="full").fit(self.normed[fit_idx])
        scaler = StandardScaler().fit(pca.transform(self.normed[fit_idx]))
        model = LogisticRegression(C=0.01, max_iter=5000).fit(
            scaler.transform(pca.transform(self.normed[fit_idx])), self.d.labels[fit_idx])
        return lambda idx: model.decision_function(scaler.transform(pca.transform(
            self.normed[idx])))

    def _gbdt(self, fit_idx: np.ndarray, salt: str, extra: Scores | None = None,
              oof: np.ndarray | None = None, params: dict[str, Any] = GBDT_PARAMS) -> Scores:
        """Stop on inner fold 0 of the fit users, refit on all of them at the best tree."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = self.x[fit_idx] if oof is None else np.column_stack([self.x[fit_idx], oof])
        y = self.d.labels[fit_idx]
        hold = self._inner(fit_idx, salt) == 0
        probe = HistGradientBoostingClassifier(early_stopping=True, scoring="average_precision",
                                               n_iter_no_change=30, random_state=0, **params)
        probe.fit(x[~hold], y[~hold], X_val=x[hold], y_val=y[hold])
        scores = probe.validation_score_
        best = max(1, len(scores) - 1 - int(np.argmax(scores[::-1])))
        model = HistGradientBoostingClassifier(early_stopping=False, random_state=0,
                                               **{**params, "max_iter": best}).fit(x, y)

        def score(idx: np.ndarray) -> np.ndarray:
            xi = self.x[idx] if extra is None else np.column_stack([self.x[idx], extra(idx)])
            return model.decision_function(xi)

        return score

    def _stack(self, fit_idx: np.ndarray, salt: str) -> Scores:
        inner = self._inner(fit_idx, salt)
        oof = np.zeros(len(fit_idx))
        for k in range(FOLDS):
            oof[inner == k] = self._text(fit_idx[inner != k])(fit_idx[inner == k])
        return self._gbdt(fit_idx, salt, extra=self._text(fit_idx), oof=oof,
                          params=STACK_PARAMS)


def splits(data: Data, salts: Sequence[str] = SALTS, *, with_time: bool = True
           ) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(name, salt, fit_idx, score_idx, stop_idx)``: 5 folds per salt, then ``time``
    (``stop_idx``: what the product baseline stops on, as in ``train``)."""
    out = []
    for salt in salts:
        fold = np.array([user_fold(u, seed=salt, folds=FOLDS) for u in data.users])
        for k in range(FOLDS):
            score = np.flatnonzero(fold == k)
            out.append((f"{salt}/{k}", salt, np.flatnonzero(fold != k), score, score))
    if with_time and data.examples is not None:
        position = {id(e): i for i, e in enumerate(data.examples)}
        before, after, _ = time_split(data.examples, 0.2, horizon_s=DEFAULT_HORIZON_S)
        part = {id(e): user_split(e.user_id) for e in before}
        fit = np.array([position[id(e)] for e in before if part[id(e)] == "train"])
        stop = np.array([position[id(e)] for e in before if part[id(e)] == "val"])
        out.append(("time", DEFAULT_SPLIT_SEED, fit, np.array([position[id(e)] for e in after]),
                    stop))
    return out


def compare(data: Data, names: Sequence[str], *, salts: Sequence[str] = SALTS,
            with_time: bool = True, log: Callable[[str], None] | None = None
            ) -> dict[str, dict[str, dict[str, float]]]:
    """PR-AUC, ROC-AUC and fit seconds of each candidate on each split."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    cands = Candidates(data)
    out: dict[str, dict[str, dict[str, float]]] = {}
    with threadpool_limits(limits=1):
        for name, salt, fit_idx, score_idx, stop_idx in splits(data, salts, with_time=with_time):
            y = data.labels[score_idx]
            row = {}
            for cand in names:
                t0 = time.perf_counter()
                p = cands.fit(cand, fit_idx, salt, stop_idx)(score_idx)
                row[cand] = {"pr_auc": float(average_precision_score(y, p)),
                             "roc_auc": float(roc_auc_score(y, p)),
                             "seconds": round(time.perf_counter() - t0, 2)}
            out[name] = row
            if log:
                log(f"{name}: " + " ".join(f"{c}={m['pr_auc']:.3f}" for c, m in row.items()))
    return out


def summary(results: dict[str, dict[str, dict[str, float]]], *, reference: str = "baseline",
            current: str = "linear") -> dict[str, dict[str, Any]]:
    """Per candidate: mean/sd over the user splits, wins and mean paired PR-AUC differences
    against ``reference`` and ``current``, the time split and the recorded validation split."""
    users = [s for s in results if s != "time"]
    names = list(results[users[0]])
    out = {}
    for name in names:
        pr = np.array([results[s][name]["pr_auc"] for s in users])
        roc = np.array([results[s][name]["roc_auc"] for s in users])
        row: dict[str, Any] = {"splits": len(users),
                               "pr_auc": {"mean": pr.mean(), "sd": pr.std(ddof=1)},
                               "roc_auc": {"mean": roc.mean(), "sd": roc.std(ddof=1)}}
        for other in (reference, current):
            if other in names and other != name:
                diff = pr - np.array([results[s][other]["pr_auc"] for s in users])
                row[f"vs_{other}"] = {"wins": int((diff > 0).sum()), "pr_auc_diff_mean":
                                      diff.mean(), "pr_auc_diff_sd": diff.std(ddof=1)}
        for split, key in (("time", "time_split"), (f"{DEFAULT_SPLIT_SEED}/0", "recorded_val")):
            if split in results:
                row[key] = {k: results[split][name][k] for k in ("pr_auc", "roc_auc")}
        out[name] = _floats(row)
    return out


def table(rows: dict[str, dict[str, Any]], *, reference: str = "baseline",
          current: str = "linear") -> str:
    """The summary as a Markdown table."""
    head = ("| candidate | PR-AUC mean ± sd | ROC-AUC mean ± sd | wins vs GBDT | ΔPR vs GBDT "
            "| wins vs linear | ΔPR vs linear | time PR / ROC | val PR / ROC |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        def vs(other: str, r: dict[str, Any] = r) -> tuple[str, str]:
            v = r.get(f"vs_{other}")
            if v is None:
                return "-", "-"
            return (f"{v['wins']}/{r['splits']}",
                    f"{v['pr_auc_diff_mean']:+.3f} ± {v['pr_auc_diff_sd']:.3f}")

        def pair(key: str, r: dict[str, Any] = r) -> str:
            m = r.get(key)
            return "-" if m is None else f"{m['pr_auc']:.3f} / {m['roc_auc']:.3f}"

        lines.append(f"| {name} | {r['pr_auc']['mean']:.3f} ± {r['pr_auc']['sd']:.3f} | "
                     f"{r['roc_auc']['mean']:.3f} ± {r['roc_auc']['sd']:.3f} | "
                     f"{' | '.join(vs(reference))} | {' | '.join(vs(current))} | "
                     f"{pair('time_split')} | {pair('recorded_val')} |")
    return "\n".join(lines)


def load(path: Path, fmt: str, cache: Path | None) -> Data:
    """Examples of an event file as ``train`` builds them, their inputs and text vectors."""
    from worker.dataset import build_examples, load_events
    from worker.features import build_input
    from worker.model.modeldir import DEFAULT_ENCODER_PACKAGE, package_dir
    from worker.training.bert import BertRun, BertSettings

    events = load_events(path, fmt)
    examples = build_examples(events.events, horizon_s=DEFAULT_HORIZON_S, max_events=50,
                              window_seconds=3600)
    inputs = [build_input(e.window, max_chars=768) for e in examples]
    labels = np.array([e.label for e in examples], dtype=int)
    settings = BertSettings(epochs=1, batch_size=128, lr=1e-4, encoder_lr=2e-5, weight_decay=0.1,
                            patience=1, seed=0, input_dropout=0.0, pos_weight=None,
                            head_hidden=2, head_dropout=0.0, max_tokens=128, max_chars=768,
                            finetune=False, device="cpu", head="linear")
    run = BertRun(package_dir(DEFAULT_ENCODER_PACKAGE), inputs, labels, settings,
                  progress=False, embedding_cache=cache)
    run.prepare()
    assert run.vectors is not None
    return Data(vectors=run.vectors.numpy(), features=run.features.numpy(), labels=labels,
                users=np.array([e.user_id for e in examples]), examples=examples)


def _floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, np.floating):
        return round(float(value), 4)
    if isinstance(value, float):
        return round(value, 4)
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--format", default="rees46", choices=["rees46", "jsonl"])
    parser.add_argument("--cache", type=Path, default=None, help="text-vector cache (.npz)")
    parser.add_argument("--candidates", default=",".join(ALL))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    data = load(args.input, args.format, args.cache)
    results = compare(data, args.candidates.split(","), log=lambda s: print(s, flush=True))
    rows = summary(results)
    print(table(rows))
    print(f"{time.perf_counter() - t0:.0f}s")
    if args.out:
        args.out.write_text(json.dumps({"splits": results, "summary": rows}, indent=1) + "\n",
                            encoding="utf-8")


if __name__ == "__main__":
    main()
