"""Window models over per-event vectors against today's window-text head, over many user
splits and the time split: which window model to ship?

    python -m loadtest.vector_compare ../shared/data/rees46/events-dev.csv --format rees46 \
        --cache emb-cache.npz --out vector-compare.json

**Data.** Examples as ``train`` builds them (label horizon 600 s, the worker's window: at
most 50 events spanning at most 3,600 s), their 42 context features and window-text vectors
(:func:`loadtest.head_compare.load`). The pooled candidates read the product's own inputs and
statistics: :func:`worker.features.build_input` with ``max_chars=0`` and a ``phrase_price``
(each event's phrase, no age, newest first), then :meth:`worker.training.pooled.PooledRun.prepare`
(each distinct phrase encoded once by the shipped MiniLM, float16-rounded as the worker stores
it, every window pooled by :func:`worker.model.pooled.pool`, half-life 300 s).

**Candidates** (all fitted on the fit users of a split only; no choice uses scored users):

- ``pooled``: the shipped recipe, :func:`~worker.training.pooled.fit_pooled_head` with
  ``components=8`` over bucketed-price phrases (the features, 8 principal components of the
  recency-weighted mean vector and of the newest event's vector, the newest event's cosine
  to the rest; logistic regression, C 0.01);
- ``pooled_k4``, ``pooled_k16``: the same with 4 or 16 components of each vector;
- ``pooled_kcv``: the same with the number of components (:data:`KCV_COMPONENTS`) picked by
  mean PR-AUC over 5 inner user folds of the fit users;
- ``pooled_noprice``: ``pooled`` over phrases without the price;
- ``pooled_features``: ``fit_pooled_head(..., text=False)``, the product's ablation (the
  context features alone; it should match ``features``);
- ``text``: today's head (head_compare's ``linear``: features + 4 PCs of the window text);
- ``features``: the same linear head without any text (0 components);
- ``baseline``: the product GBDT as ``train`` fits it (head_compare's ``baseline_inner``:
  stopped on inner fit users, refitted on all of them);
- ``gru``, ``gru_loss`` (only when named in ``--candidates``: slow, and unstable at this
  data size): a GRU (hidden 64) over the window's events, oldest to newest, each
  ``[16 PCs of its phrase vector, event type one-hot, log age to the newest, log price, has
  a price, same product / category as the newest]``, its last state concatenated with the
  standardised features into one logit; early-stopped on PR-AUC (``gru``) or log-loss
  (``gru_loss``) of the users :func:`~worker.dataset.inner_user_split` holds out of the fit
  users, then scored as is;
- ``transformer`` (only when named): the same, with one Transformer encoder layer (d 64,
  4 heads, padding masked) in place of the GRU, early-stopped on PR-AUC.

**Splits** (:func:`loadtest.head_compare.splits`): 5 folds by user for each of 4 salts
(20 splits, no user on both sides), then the time split. Per candidate: PR-AUC and ROC-AUC
mean and sd over the 20, paired PR-AUC differences to ``text``, ``features`` and ``baseline``
with a 95 % t interval over the 20 (the splits share data, so the interval is indicative, not
exact) and the splits won; the first salt's 5 folds alone; the time split.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.head_compare import SALTS, Candidates
from loadtest.head_compare import Data as TextData
from loadtest.head_compare import splits as all_splits
from worker.dataset.split import DEFAULT_SPLIT_SEED
from worker.model.pooled import PooledStats
from worker.training.pooled import DEFAULT_C, DEFAULT_HALF_LIFE_S, DEFAULT_POOLED_COMPONENTS

__all__ = ["ALL", "DEFAULT", "KCV_COMPONENTS", "EventTable", "VectorCandidates", "Vectors",
           "compare", "event_table", "main", "paired", "summary", "table"]

ALL = ("baseline", "features", "text", "pooled", "pooled_k4", "pooled_k16", "pooled_kcv",
       "pooled_noprice", "pooled_features", "gru", "gru_loss", "transformer")
SEQUENCE_MODELS = ("gru", "gru_loss", "transformer")
DEFAULT = tuple(n for n in ALL if n not in SEQUENCE_MODELS)  # those run only when named
COMPONENTS = {"pooled": DEFAULT_POOLED_COMPONENTS, "pooled_k4": 4, "pooled_k16": 16,
              "pooled_noprice": DEFAULT_POOLED_COMPONENTS}
KCV_COMPONENTS = (4, 8, 16)  # pooled_kcv picks one on inner user folds of the fit users
SEQ_COMPONENTS = 16
GRU_HIDDEN = 64
GRU_EPOCHS = 12
GRU_PATIENCE = 3
GRU_BATCH = 256
GRU_LR = 3e-3
KINDS = ("view", "search", "add_to_cart", "remove_from_cart", "purchase", "review")
T_975 = {19: 2.093, 4: 2.776}  # Student t quantiles for 20 and 5 splits


# --- data ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventTable:
    """Per example, its window's events newest first, padded to ``width`` columns (-1 / 0)."""

    phrase: np.ndarray  # (n, width) int: index into the phrase vectors, -1 for padding
    kind: np.ndarray  # (n, width) int: event type code (len(KINDS) for others)
    age_s: np.ndarray  # (n, width) float: seconds to the newest event
    log_price: np.ndarray  # (n, width) float: log1p(price), 0 when absent
    has_price: np.ndarray  # (n, width) float
    same_product: np.ndarray  # (n, width) float: same product id as the newest event
    same_category: np.ndarray  # (n, width) float
    length: np.ndarray  # (n,) int


@dataclass(frozen=True)
class Vectors:
    """Window-text data (head_compare) plus, per phrase price mode, the product's model inputs
    (:class:`~worker.features.ModelInput` with its event sequence) and pooled statistics;
    ``features``: the context features of those inputs (the same as ``text.features``)."""

    text: TextData
    stats: dict[str, PooledStats]
    features: np.ndarray
    inputs: dict[str, Sequence[Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def event_table(windows: Sequence[Sequence[dict]], sequences: Sequence[Any]
                ) -> tuple[EventTable, list[str]]:
    """The :class:`EventTable` of windows (each oldest first) whose phrases are the product's
    event sequences (``ModelInput.events``, newest first), and the distinct phrases."""
    from worker.features.facts import window_facts

    n = len(windows)
    width = max(len(s.phrases) for s in sequences)
    phrase = np.full((n, width), -1, dtype=np.int64)
    kind = np.zeros((n, width), dtype=np.int64)
    age = np.zeros((n, width))
    log_price = np.zeros((n, width))
    has_price = np.zeros((n, width))
    same_product = np.zeros((n, width))
    same_category = np.zeros((n, width))
    length = np.zeros(n, dtype=np.int64)
    index: dict[str, int] = {}
    for i, (window, seq) in enumerate(zip(windows, sequences, strict=True)):
        facts = window_facts(window)[::-1]  # newest first, as the sequence
        if len(facts) != len(seq.phrases):
            raise ValueError(f"window {i}: {len(facts)} events, {len(seq.phrases)} phrases")
        newest = facts[0]
        length[i] = len(facts)
        for j, (f, text) in enumerate(zip(facts, seq.phrases, strict=True)):
            phrase[i, j] = index.setdefault(text, len(index))
            kind[i, j] = min(f[1], len(KINDS))
            age[i, j] = seq.ages_s[j]
            if f[2] is not None:
                log_price[i, j], has_price[i, j] = f[2], 1.0
            same_product[i, j] = float(f[3] is not None and f[3] == newest[3])
            same_category[i, j] = float(f[4] is not None and f[4] == newest[4])
    table_ = EventTable(phrase, kind, age, log_price, has_price, same_product, same_category,
                        length)
    return table_, list(index)


def load(path: Path, fmt: str, cache: Path | None, prices: Sequence[str] = ("bucket", "none")
         ) -> Vectors:
    """Examples and window-text vectors (head_compare), then the product's inputs and pooled
    statistics of the same examples for each phrase price mode."""
    from loadtest.head_compare import load as load_text
    from worker.features import build_input
    from worker.model.modeldir import DEFAULT_ENCODER_PACKAGE, package_dir
    from worker.training.pooled import PooledRun

    t0 = time.perf_counter()
    text = load_text(path, fmt, cache)
    info: dict[str, Any] = {"examples": len(text.labels), "positives": int(text.labels.sum()),
                            "users": len(set(text.users.tolist())),
                            "text_seconds": round(time.perf_counter() - t0, 1)}
    assert text.examples is not None
    stats: dict[str, PooledStats] = {}
    inputs: dict[str, Sequence[Any]] = {}
    features = None
    for price in prices:
        t1 = time.perf_counter()
        inputs[price] = [build_input(e.window, max_chars=0, phrase_price=price)  # type: ignore[arg-type]
                         for e in text.examples]
        t2 = time.perf_counter()
        run = PooledRun(package_dir(DEFAULT_ENCODER_PACKAGE), inputs[price], text.labels,
                        half_life_s=DEFAULT_HALF_LIFE_S)
        run.prepare()
        assert run.stats is not None
        stats[price], features = run.stats, run.features
        distinct = list(dict.fromkeys(p for i in inputs[price] for p in i.events.phrases))
        info[f"phrases_{price}"] = {
            **run.info, "input_seconds": round(t2 - t1, 2),
            "mean_chars": round(float(np.mean([len(p) for p in distinct])), 1),
            "examples": distinct[:3]}
    assert features is not None
    gap = float(np.abs(features - text.features.astype(np.float64)).max())
    if gap > 1e-3:
        raise ValueError(f"the product's features differ from the text data's by {gap}")
    info["feature_gap"] = gap
    lengths = [len(i.events.phrases) for i in inputs[prices[0]]]
    info["window"] = {"max_events": max(lengths), "mean_events": float(np.mean(lengths))}
    return Vectors(text=text, stats=stats, features=features, inputs=inputs, info=info)


# --- candidates ----------------------------------------------------------------------------

Scores = Callable[[np.ndarray], np.ndarray]


class VectorCandidates:
    """``fit(name, fit_idx, salt, stop_idx) -> scores(idx)`` for the names in :data:`ALL`."""

    def __init__(self, data: Vectors, *, seed: int = 0) -> None:
        self.d = data
        self.text = Candidates(data.text)
        self.x = data.text.features.astype(np.float64)
        self.y = data.text.labels
        self.seed = seed
        self._sequences: tuple[EventTable, np.ndarray] | None = None

    def fit(self, name: str, fit_idx: np.ndarray, salt: str, stop_idx: np.ndarray) -> Scores:
        if name == "baseline":
            return self.text.fit("baseline_inner", fit_idx, salt, stop_idx)
        if name == "text":
            return self.text.fit("linear", fit_idx, salt, stop_idx)
        if name == "features":
            return self._linear(fit_idx)
        if name in COMPONENTS:
            price = "none" if name == "pooled_noprice" else "bucket"
            return self.pooled(price, COMPONENTS[name], fit_idx)
        if name == "pooled_kcv":
            return self._pooled_kcv(fit_idx, salt)
        if name == "pooled_features":
            return self.pooled("bucket", DEFAULT_POOLED_COMPONENTS, fit_idx, text=False)
        if name in ("gru", "gru_loss"):
            return self._gru(fit_idx, salt, stop="pr_auc" if name == "gru" else "loss")
        if name == "transformer":
            return self._gru(fit_idx, salt, stop="pr_auc", arch="transformer")
        raise ValueError(f"unknown candidate {name!r}; known: {ALL}")

    def pooled(self, price: str, components: int, fit_idx: np.ndarray, *, text: bool = True
               ) -> Scores:
        """The product's pooled head (:func:`fit_pooled_head`) fitted on ``fit_idx``; scores
        are its logits."""
        from worker.training.pooled import fit_pooled_head

        stats, feats = self.d.stats[price], self.d.features
        head, _ = fit_pooled_head(stats, feats, self.y, fit_idx, components=components,
                                  c=DEFAULT_C, text=text)

        def score(idx: np.ndarray) -> np.ndarray:
            part = PooledStats(stats.mean[idx], stats.newest[idx], stats.cos[idx])
            return head.logits(part, feats[idx])

        return score

    def _pooled_kcv(self, fit_idx: np.ndarray, salt: str) -> Scores:
        """``pooled`` with the components of :data:`KCV_COMPONENTS` that have the best mean
        PR-AUC over 5 inner user folds of the fit users."""
        from sklearn.metrics import average_precision_score

        inner = self.text._inner(fit_idx, salt)
        means = []
        for k in KCV_COMPONENTS:
            scores = []
            for fold in range(5):
                tr, ho = fit_idx[inner != fold], fit_idx[inner == fold]
                p = self.pooled("bucket", k, tr)(ho)
                scores.append(average_precision_score(self.y[ho], p))
            means.append(float(np.mean(scores)))
        best = KCV_COMPONENTS[int(np.argmax(means))]
        score = self.pooled("bucket", best, fit_idx)
        score.info = {"components": best}  # type: ignore[attr-defined]
        return score

    def _linear(self, fit_idx: np.ndarray) -> Scores:
        """The standardised features into a logistic regression, C 0.01 (no text)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(self.x[fit_idx])
        model = LogisticRegression(C=DEFAULT_C, max_iter=5000).fit(
            scaler.transform(self.x[fit_idx]), self.y[fit_idx])
        return lambda idx: model.decision_function(scaler.transform(self.x[idx]))

    def sequences(self) -> tuple[EventTable, np.ndarray]:
        """The GRU's event table over the bucketed-price phrases and their layer-normalised
        vectors (encoded once, as the worker stores them), built on first use."""
        if self._sequences is None:
            from worker.model.modeldir import DEFAULT_ENCODER_PACKAGE, package_dir
            from worker.model.phrase_encoder import TorchPhraseEncoder
            from worker.model.pooled import layer_norm
            from worker.model.vectors import EventVectors

            ex = self.d.text.examples
            assert ex is not None
            table_, phrases = event_table([e.window for e in ex],
                                          [i.events for i in self.d.inputs["bucket"]])
            encoder = TorchPhraseEncoder.from_directory(package_dir(DEFAULT_ENCODER_PACKAGE),
                                                        max_tokens=64)
            vectors = EventVectors(encoder, cache_size=0).vectors_here(phrases)
            self._sequences = table_, layer_norm(vectors)
        return self._sequences

    def _gru(self, fit_idx: np.ndarray, salt: str, stop: str, arch: str = "gru") -> Scores:
        from worker.dataset.split import inner_user_split

        ex = self.d.text.examples
        assert ex is not None
        position = {id(ex[i]): i for i in fit_idx}
        inner_fit, hold = inner_user_split([ex[i] for i in fit_idx], seed=salt)
        tr = np.array([position[id(e)] for e in inner_fit])
        ho = np.array([position[id(e)] for e in hold])
        table_, vectors = self.sequences()
        return fit_gru(table_, vectors, self.x, self.y, fit_idx, tr, ho, seed=self.seed,
                       stop=stop, arch=arch)


def sequence_inputs(t: EventTable, projected: np.ndarray) -> np.ndarray:
    """``(n, width, k + kinds + 6)`` per-event inputs, newest first (zeros past the length):
    projected phrase vector, type one-hot, log1p(age), log price, has price, same product,
    same category."""
    n, width = t.phrase.shape
    onehot = np.eye(len(KINDS) + 1)[t.kind]
    vec = projected[np.maximum(t.phrase, 0)]
    out = np.concatenate([vec, onehot, np.log1p(t.age_s)[..., None], t.log_price[..., None],
                          t.has_price[..., None], t.same_product[..., None],
                          t.same_category[..., None]], axis=-1)
    out[t.phrase < 0] = 0.0
    return out.astype(np.float32)


def fit_gru(t: EventTable, vectors: np.ndarray, x: np.ndarray, y: np.ndarray,
            fit_idx: np.ndarray, train_idx: np.ndarray, hold_idx: np.ndarray, *, seed: int = 0,
            epochs: int = GRU_EPOCHS, patience: int = GRU_PATIENCE, stop: str = "pr_auc",
            arch: str = "gru") -> Scores:
    """The ``gru`` candidate: PCA and standardisation fitted on ``fit_idx``'s events and rows,
    trained on ``train_idx``, early-stopped on ``hold_idx`` (``stop``: PR-AUC, or ``loss``,
    the log-loss), the best epoch kept. ``arch="transformer"``: the ``transformer`` candidate,
    one Transformer encoder layer (d 64, 4 heads, feed-forward 128, padding masked; the age is
    an input, so no position embedding) instead of the GRU, its newest event's state read."""
    import torch
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, log_loss
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    if stop not in ("pr_auc", "loss"):
        raise ValueError(f"stop must be 'pr_auc' or 'loss', got {stop!r}")
    if arch not in ("gru", "transformer"):
        raise ValueError(f"arch must be 'gru' or 'transformer', got {arch!r}")

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    used = np.unique(t.phrase[fit_idx][t.phrase[fit_idx] >= 0])
    pca = PCA(SEQ_COMPONENTS, svd_solver="full").fit(vectors[used])
    proj = pca.transform(vectors) / np.sqrt(pca.explained_variance_[0])
    seq = sequence_inputs(t, proj)
    valid = t.phrase[fit_idx] >= 0
    s_mean = seq[fit_idx][valid].mean(0)
    s_std = seq[fit_idx][valid].std(0) + 1e-6
    seq = np.where((t.phrase >= 0)[..., None], (seq - s_mean) / s_std, 0.0).astype(np.float32)
    seq = np.ascontiguousarray(seq[:, ::-1])  # oldest first, padding in front
    feats = StandardScaler().fit(x[fit_idx])
    xf = feats.transform(x).astype(np.float32)
    seq_t, xf_t = torch.from_numpy(seq), torch.from_numpy(xf)
    y_t = torch.from_numpy(y.astype(np.float32))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if arch == "gru":
                self.gru = nn.GRU(seq.shape[-1], GRU_HIDDEN, batch_first=True)
            else:
                self.inp = nn.Linear(seq.shape[-1], GRU_HIDDEN)
                self.layer = nn.TransformerEncoderLayer(GRU_HIDDEN, 4, 2 * GRU_HIDDEN,
                                                        dropout=0.1, batch_first=True)
            self.drop = nn.Dropout(0.2)
            self.out = nn.Linear(GRU_HIDDEN + xf.shape[1], 1)

        def forward(self, s: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            if arch == "gru":
                _, h = self.gru(s)  # padding in front: the last state is the newest event's
                state = h[-1]
            else:
                pad = (s == 0).all(-1)  # padding rows are all zeros (in front)
                state = self.layer(self.inp(s), src_key_padding_mask=pad)[:, -1]
            return self.out(torch.cat([self.drop(state), f], dim=1)).squeeze(1)

    def trim(idx: np.ndarray) -> torch.Tensor:
        return seq_t[idx, -int(t.length[idx].max()):]

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=GRU_LR, weight_decay=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()

    def predict(idx: np.ndarray) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(idx), 1024):
                part = idx[s:s + 1024]
                out.append(net(trim(part), xf_t[part]).numpy())
        return np.concatenate(out).astype(float)

    best, best_state, bad, best_epoch = -math.inf, None, 0, 0
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(train_idx)
        for s in range(0, len(order), GRU_BATCH):
            part = order[s:s + GRU_BATCH]
            opt.zero_grad()
            loss = loss_fn(net(trim(part), xf_t[part]), y_t[part])
            loss.backward()
            opt.step()
        logits = predict(hold_idx)
        score = (float(average_precision_score(y[hold_idx], logits)) if stop == "pr_auc" else
                 -float(log_loss(y[hold_idx], 1 / (1 + np.exp(-logits)), labels=[0, 1])))
        if score > best:
            best, bad, best_epoch = score, 0, epoch + 1
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    predict.info = {"epochs": best_epoch}  # type: ignore[attr-defined]
    return predict


# --- comparison ----------------------------------------------------------------------------

def compare(data: Vectors, names: Sequence[str], *, salts: Sequence[str] = SALTS,
            with_time: bool = True, log: Callable[[str], None] | None = None
            ) -> dict[str, dict[str, dict[str, float]]]:
    """PR-AUC, ROC-AUC and fit seconds of each candidate on each split."""
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(2)
    cands = VectorCandidates(data)
    out: dict[str, dict[str, dict[str, float]]] = {}
    with threadpool_limits(limits=1):
        for name, salt, fit_idx, score_idx, stop_idx in all_splits(data.text, salts,
                                                                   with_time=with_time):
            y = data.text.labels[score_idx]
            row = {}
            for cand in names:
                t0 = time.perf_counter()
                score = cands.fit(cand, fit_idx, salt, stop_idx)
                p = score(score_idx)
                row[cand] = {"pr_auc": float(average_precision_score(y, p)),
                             "roc_auc": float(roc_auc_score(y, p)),
                             "seconds": round(time.perf_counter() - t0, 2),
                             **getattr(score, "info", {})}
            out[name] = row
            if log:
                log(f"{name}: " + " ".join(f"{c}={m['pr_auc']:.3f}" for c, m in row.items()))
    return out


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Mean, sd and 95 % t interval of ``a - b`` over splits, and how often ``a > b``."""
    d = np.asarray(a) - np.asarray(b)
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    half = T_975.get(len(d) - 1, 1.96) * sd / math.sqrt(len(d))
    return {"wins": int((d > 0).sum()), "of": len(d), "mean": float(d.mean()), "sd": sd,
            "ci95": [float(d.mean() - half), float(d.mean() + half)]}


def summary(results: dict[str, dict[str, dict[str, float]]],
            against: Sequence[str] = ("text", "features", "baseline")) -> dict[str, Any]:
    """Per candidate: mean/sd over the user splits, paired PR-AUC (and ROC-AUC) differences
    to each of ``against``, the first salt's 5 folds, the time split."""
    users = [s for s in results if s != "time"]
    first = [s for s in users if s.startswith(f"{DEFAULT_SPLIT_SEED}/")]
    names = list(results[users[0]])
    out: dict[str, Any] = {}
    for name in names:
        pr = np.array([results[s][name]["pr_auc"] for s in users])
        roc = np.array([results[s][name]["roc_auc"] for s in users])
        row: dict[str, Any] = {"splits": len(users),
                               "pr_auc": {"mean": pr.mean(), "sd": pr.std(ddof=1)},
                               "roc_auc": {"mean": roc.mean(), "sd": roc.std(ddof=1)}}
        for other in against:
            if other in names and other != name:
                opr = np.array([results[s][other]["pr_auc"] for s in users])
                oroc = np.array([results[s][other]["roc_auc"] for s in users])
                row[f"vs_{other}"] = {"pr_auc": paired(pr, opr), "roc_auc": paired(roc, oroc)}
        if first:
            fpr = np.array([results[s][name]["pr_auc"] for s in first])
            froc = np.array([results[s][name]["roc_auc"] for s in first])
            row["five_fold"] = {"pr_auc": {"mean": fpr.mean(), "sd": fpr.std(ddof=1)},
                                "roc_auc": {"mean": froc.mean(), "sd": froc.std(ddof=1)}}
        if "time" in results:
            row["time_split"] = {k: results["time"][name][k] for k in ("pr_auc", "roc_auc")}
        row["seconds_per_split"] = float(np.mean([results[s][name]["seconds"] for s in users]))
        out[name] = _floats(row)
    return out


def table(rows: dict[str, Any]) -> str:
    """The summary as a Markdown table (PR-AUC differences, 95 % intervals, wins)."""
    lines = ["| candidate | PR-AUC mean ± sd | ROC-AUC mean ± sd | ΔPR vs text [95 %] (wins) "
             "| ΔPR vs features [95 %] (wins) | ΔPR vs baseline [95 %] (wins) "
             "| 5-fold PR | time PR / ROC | s / split |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        def vs(other: str, r: dict[str, Any] = r) -> str:
            v = r.get(f"vs_{other}")
            if v is None:
                return "-"
            p = v["pr_auc"]
            return (f"{p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] "
                    f"({p['wins']}/{p['of']})")

        ff = r.get("five_fold")
        tm = r.get("time_split")
        five = "-" if ff is None else f"{ff['pr_auc']['mean']:.3f}"
        when = "-" if tm is None else f"{tm['pr_auc']:.3f} / {tm['roc_auc']:.3f}"
        lines.append(
            f"| {name} | {r['pr_auc']['mean']:.3f} ± {r['pr_auc']['sd']:.3f} | "
            f"{r['roc_auc']['mean']:.3f} ± {r['roc_auc']['sd']:.3f} | {vs('text')} | "
            f"{vs('features')} | {vs('baseline')} | "
            f"{five} | {when} | "
            f"{r['seconds_per_split']:.1f} |")
    return "\n".join(lines)


def _floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 4)
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--format", default="rees46", choices=["rees46", "jsonl"])
    parser.add_argument("--cache", type=Path, default=None,
                        help="vector cache (.npz) for window texts and event phrases")
    parser.add_argument("--candidates", default=",".join(DEFAULT),
                        help=f"comma-separated, of {','.join(ALL)}")
    parser.add_argument("--salts", default=",".join(SALTS))
    parser.add_argument("--no-time", action="store_true", help="skip the time split")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    names = args.candidates.split(",")
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(ALL)}")
    prices = ("bucket", "none") if "pooled_noprice" in names else ("bucket",)
    data = load(args.input, args.format, args.cache, prices)
    print(json.dumps(data.info, indent=1), flush=True)
    results = compare(data, names, salts=args.salts.split(","), with_time=not args.no_time,
                      log=lambda s: print(s, flush=True))
    rows = summary(results)
    print(table(rows))
    seconds = time.perf_counter() - t0
    print(f"{seconds:.0f}s")
    if args.out:
        settings = {"half_life_s": DEFAULT_HALF_LIFE_S, "components": COMPONENTS,
                    "kcv_components": list(KCV_COMPONENTS), "C": DEFAULT_C, "phrase_max_tokens": 64,
                    "seq_components": SEQ_COMPONENTS, "gru_hidden": GRU_HIDDEN,
                    "gru_epochs": GRU_EPOCHS, "gru_patience": GRU_PATIENCE,
                    "gru_batch": GRU_BATCH, "gru_lr": GRU_LR, "seed": 0}
        args.out.write_text(json.dumps(_floats({"data": data.info, "settings": settings,
                                                "seconds": seconds, "splits": results,
                                                "summary": rows}), indent=1) + "\n",
                            encoding="utf-8")


if __name__ == "__main__":
    main()
