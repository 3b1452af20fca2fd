"""Window models over per-event vectors against today's window-text head, over many user
splits and the time split: which window model to ship?

    python -m loadtest.vector_compare ../shared/data/rees46/events-dev.csv --format rees46 \
        --cache emb-cache.npz --out vector-compare.json

**Data.** Examples as ``train`` builds them (label horizon 600 s, the worker's window: at
most 50 events spanning at most 3,600 s), their 42 context features and window-text vectors
(:func:`loadtest.head_compare.load`). Each *distinct* event phrase (:func:`event_phrase`:
one event without its age) is encoded once by the shipped frozen MiniLM encoder (mean
pooling, the model's token budget; the same vector cache as the window texts).

**Candidates** (all fitted on the fit users of a split only; no choice uses scored users):

- ``pooled``: a linear head (standardised inputs, logistic regression, C 0.01, as
  :func:`~worker.training.linear.fit_linear_head`) on the 42 features, ``k`` principal
  components of the window's recency-weighted mean event vector, ``k`` of the newest
  event's vector (each PCA fitted on the fit rows) and the cosine of the newest event's
  vector to the mean of the others (:func:`pooled_stats`; half-life fixed, not tuned);
- ``pooled_noprice``: the same over phrases without the price;
- ``pooled_k8``: ``pooled`` with 8 components of each vector;
- ``pooled_hl``: ``pooled`` with the half-life picked among :data:`HALF_LIVES_S` (inf: a
  plain mean) by mean PR-AUC over 5 inner user folds of the fit users;
- ``gru``: a GRU (hidden 64) over the window's events, oldest to newest, each
  ``[16 PCs of its vector, event type one-hot, log age to the newest, log price, has a price,
  same product / category as the newest]``, its last state concatenated with the standardised
  features into one logit; early-stopped (PR-AUC) on the users
  :func:`~worker.dataset.inner_user_split` holds out of the fit users, then scored as is;
- ``gru_loss``: the same GRU early-stopped on the held-out log-loss instead;
- ``text``: today's head (head_compare's ``linear``: features + 4 PCs of the window text);
- ``features``: the ablation, the same linear head without any text (0 components);
- ``baseline``: the product GBDT as ``train`` fits it (head_compare's ``baseline_inner``:
  stopped on inner fit users, refitted on all of them).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.head_compare import SALTS, Candidates
from loadtest.head_compare import Data as TextData
from loadtest.head_compare import splits as all_splits
from worker.dataset.split import DEFAULT_SPLIT_SEED

__all__ = ["ALL", "HALF_LIFE_S", "Candidates", "EventTable", "Vectors", "compare", "event_phrase",
           "fit_pca", "main", "pooled_stats", "summary", "table"]

ALL = ("baseline", "features", "text", "pooled", "pooled_noprice", "pooled_k8", "pooled_hl",
       "gru", "gru_loss")
HALF_LIFE_S = 300.0  # recency weight of an event: 0.5 ** (age to the newest / HALF_LIFE_S)
HALF_LIVES_S = (60.0, 300.0, 1800.0, math.inf)  # pooled_hl picks one on inner user folds
POOL_COMPONENTS = 4
SEQ_COMPONENTS = 16
C = 0.01
GRU_HIDDEN = 64
GRU_EPOCHS = 12
GRU_PATIENCE = 3
GRU_BATCH = 256
GRU_LR = 3e-3
KINDS = ("view", "search", "add_to_cart", "remove_from_cart", "purchase", "review")
T_975 = {19: 2.093, 4: 2.776}  # Student t quantiles for 20 and 5 splits


# --- event phrases -----------------------------------------------------------------------
# The phrases this study was run with: worker.features.phrase's wording, with the price rounded
# to half decades (1, 3, 10, 30, ...) before rendering. worker.features.phrase's own "bucket"
# mode writes a 1-2-5 band instead ("price 200-500 USD"); the recorded figures use this one.

def price_bucket(price: float) -> float:
    """A coarse log-scale stand-in for a price: 1, 3, 10, 30, 100, 300, ... (half decades,
    rounded to the nearest on a log scale); 0 for prices below 0.5."""
    if price < 0.5:
        return 0.0
    step = round(2 * math.log10(price))
    return float(10 ** (step // 2) * (3 if step % 2 else 1))


def event_phrase(event: dict, price: str = "bucket") -> str:
    """:func:`worker.features.phrase.event_phrase` of ``event`` with its price bucketed
    (``"bucket"``, :func:`price_bucket`) or left out (``"none"``); no age cue."""
    from worker.features.phrase import event_phrase as text_phrase

    if price not in ("bucket", "none"):
        raise ValueError(f"price must be 'bucket' or 'none', got {price!r}")
    product = event.get("product")
    if product and "price" in product:
        product = dict(product)
        value = product.pop("price")
        if price == "bucket" and isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value) and value >= 0:
            product["price"] = price_bucket(float(value))
        event = {**event, "product": product}
    return text_phrase(event, price="exact")


# --- pure parts ----------------------------------------------------------------------------

def layer_norm(v: np.ndarray) -> np.ndarray:
    """Each row standardised over its dimensions (the head's LayerNorm, unit weight)."""
    v = np.asarray(v, dtype=np.float64)
    return (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)


def recency_weights(ages_s: np.ndarray, half_life_s: float = HALF_LIFE_S) -> np.ndarray:
    """``0.5 ** (age / half_life)``, normalised to sum to one (equal for an infinite one)."""
    w = np.power(0.5, np.asarray(ages_s, dtype=np.float64) / half_life_s)
    return w / w.sum()


def pooled_stats(vectors: np.ndarray, ages_s: np.ndarray, half_life_s: float = HALF_LIFE_S
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(recency-weighted mean, newest vector, cosine of the newest to the mean of the rest)``
    of one window's event vectors ``(m, dim)``, **newest first**, with their ages to the newest
    event in seconds; the cosine is 0 for a one-event window."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) == 0:
        raise ValueError("empty window")
    mean = recency_weights(ages_s, half_life_s) @ vectors
    newest = vectors[0]
    cos = 0.0
    if len(vectors) > 1:
        rest = vectors[1:].mean(0)
        denom = float(np.linalg.norm(newest) * np.linalg.norm(rest))
        cos = float(newest @ rest / denom) if denom > 0 else 0.0
    return mean, newest, cos


def fit_pca(x: np.ndarray, fit_idx: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    """A PCA of ``k`` components fitted on the rows ``fit_idx`` of ``x`` only;
    returns the projection of any rows."""
    from sklearn.decomposition import PCA

    pca = PCA(k, svd_solver="full").fit(x[fit_idx])
    return pca.transform


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
    """Window-text data (head_compare) plus per-event phrase vectors and tables."""

    text: TextData
    tables: dict[str, EventTable]  # by price mode
    phrase_vectors: dict[str, np.ndarray]  # by price mode: (distinct phrases, dim), normed
    info: dict[str, Any]


def event_table(windows: Sequence[Sequence[dict]], price: str, width: int
                ) -> tuple[EventTable, list[str]]:
    """The :class:`EventTable` of windows (each oldest first) and the distinct phrases."""
    from worker.features.facts import window_facts

    n = len(windows)
    phrase = np.full((n, width), -1, dtype=np.int64)
    kind = np.zeros((n, width), dtype=np.int64)
    age = np.zeros((n, width))
    log_price = np.zeros((n, width))
    has_price = np.zeros((n, width))
    same_product = np.zeros((n, width))
    same_category = np.zeros((n, width))
    length = np.zeros(n, dtype=np.int64)
    index: dict[str, int] = {}
    by_id: dict[int, int] = {}  # one phrase per event dict (windows share them)
    for i, window in enumerate(windows):
        facts = window_facts(window)[::-1][:width]  # newest first
        newest = facts[0]
        length[i] = len(facts)
        for j, f in enumerate(facts):
            event = f[6]
            p = by_id.get(id(event))
            if p is None:
                p = by_id[id(event)] = index.setdefault(event_phrase(event, price), len(index))
            phrase[i, j] = p
            kind[i, j] = min(f[1], len(KINDS))
            age[i, j] = (newest[0] - f[0]) / 1000
            if f[2] is not None:
                log_price[i, j], has_price[i, j] = f[2], 1.0
            same_product[i, j] = float(f[3] is not None and f[3] == newest[3])
            same_category[i, j] = float(f[4] is not None and f[4] == newest[4])
    table_ = EventTable(phrase, kind, age, log_price, has_price, same_product, same_category,
                        length)
    return table_, list(index)


def load(path: Path, fmt: str, cache: Path | None, prices: Sequence[str] = ("bucket", "none")
         ) -> Vectors:
    """Examples and window-text vectors (head_compare), then each distinct event phrase
    encoded once by the shipped encoder (sharing the vector cache)."""
    import torch

    from loadtest.head_compare import load as load_text
    from worker.model.config import ModelConfig
    from worker.model.encoder import load_encoder
    from worker.model.head import FusionHead
    from worker.model.intent import IntentModel
    from worker.model.modeldir import DEFAULT_ENCODER_PACKAGE, package_dir
    from worker.training.embed import EmbeddingCache, embed_texts, encoder_id

    t0 = time.perf_counter()
    text = load_text(path, fmt, cache)
    info: dict[str, Any] = {"examples": len(text.labels), "positives": int(text.labels.sum()),
                            "users": len(set(text.users.tolist())),
                            "text_seconds": round(time.perf_counter() - t0, 1)}
    assert text.examples is not None
    windows = [e.window for e in text.examples]
    width = max(len(w) for w in windows)
    directory = package_dir(DEFAULT_ENCODER_PACKAGE)
    encoder = load_encoder(directory, pooling="mean")
    config = ModelConfig(name="phrases", version="0", text_dim=encoder.dim, max_tokens=128,
                         max_chars=768, head_hidden=2, head_dropout=0.0)
    head = FusionHead(encoder.dim, text.features.shape[1], hidden=2)  # unused: embed only
    model = IntentModel(encoder=encoder, head=head, config=config, device=torch.device("cpu"))
    emb_cache = EmbeddingCache(encoder_id(directory, pooling="mean", max_tokens=128))
    if cache:
        emb_cache.load(cache)
    tables, vectors = {}, {}
    for price in prices:
        t1 = time.perf_counter()
        table_, phrases = event_table(windows, price, width)
        t2 = time.perf_counter()
        cached = sum(emb_cache.key(p) in emb_cache.vectors for p in phrases)
        vectors[price] = layer_norm(embed_texts(model, phrases, cache=emb_cache, progress=False))
        tables[price] = table_
        info[f"phrases_{price}"] = {
            "distinct": len(phrases), "events_in_windows": int(table_.length.sum()),
            "cached": cached, "phrase_seconds": round(t2 - t1, 2),
            "encode_seconds": round(time.perf_counter() - t2, 2),
            "mean_chars": round(float(np.mean([len(p) for p in phrases])), 1),
            "examples": phrases[:3]}
    if cache:
        emb_cache.save(cache)
    info["window"] = {"max_events": width, "mean_events": float(tables[prices[0]].length.mean())}
    return Vectors(text=text, tables=tables, phrase_vectors=vectors, info=info)


# --- candidates ----------------------------------------------------------------------------

Scores = Callable[[np.ndarray], np.ndarray]


class VectorCandidates:
    """``fit(name, fit_idx, salt, stop_idx) -> scores(idx)`` for the names in :data:`ALL`."""

    def __init__(self, data: Vectors, *, half_life_s: float = HALF_LIFE_S,
                 pool_components: int = POOL_COMPONENTS, seed: int = 0) -> None:
        self.d = data
        self.text = Candidates(data.text)
        self.x = data.text.features.astype(np.float64)
        self.y = data.text.labels
        self.k = pool_components
        self.seed = seed
        self.half_life_s = half_life_s
        self._pooled: dict[tuple[str, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def pooled(self, price: str, half_life_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, newest, cosine) of every example's window, computed once per setting."""
        key = (price, half_life_s)
        if key not in self._pooled:
            self._pooled[key] = _pool_all(self.d.tables[price], self.d.phrase_vectors[price],
                                          half_life_s)
        return self._pooled[key]

    def fit(self, name: str, fit_idx: np.ndarray, salt: str, stop_idx: np.ndarray) -> Scores:
        if name == "baseline":
            return self.text.fit("baseline_inner", fit_idx, salt, stop_idx)
        if name == "text":
            return self.text.fit("linear", fit_idx, salt, stop_idx)
        if name == "features":
            return self._linear([], fit_idx)
        if name in ("pooled", "pooled_noprice", "pooled_k8"):
            price = "none" if name == "pooled_noprice" else "bucket"
            k = 8 if name == "pooled_k8" else self.k
            return self._pooled_head(price, self.half_life_s, k, fit_idx)
        if name == "pooled_hl":
            return self._pooled_hl(fit_idx, salt)
        if name in ("gru", "gru_loss"):
            return self._gru(fit_idx, salt, stop="pr_auc" if name == "gru" else "loss")
        raise ValueError(f"unknown candidate {name!r}; known: {ALL}")

    def _pooled_head(self, price: str, half_life_s: float, k: int, fit_idx: np.ndarray
                     ) -> Scores:
        mean, newest, cos = self.pooled(price, half_life_s)
        blocks = [fit_pca(mean, fit_idx, k), fit_pca(newest, fit_idx, k)]
        return self._linear([lambda i, b=blocks[0]: b(mean[i]),
                             lambda i, b=blocks[1]: b(newest[i]),
                             lambda i: cos[i, None]], fit_idx)

    def _pooled_hl(self, fit_idx: np.ndarray, salt: str) -> Scores:
        """``pooled`` at the half-life with the best mean PR-AUC over inner user folds."""
        from sklearn.metrics import average_precision_score

        inner = self.text._inner(fit_idx, salt)
        means = []
        for hl in HALF_LIVES_S:
            scores = []
            for k in range(5):
                tr, ho = fit_idx[inner != k], fit_idx[inner == k]
                p = self._pooled_head("bucket", hl, self.k, tr)(ho)
                scores.append(average_precision_score(self.y[ho], p))
            means.append(float(np.mean(scores)))
        best = HALF_LIVES_S[int(np.argmax(means))]
        score = self._pooled_head("bucket", best, self.k, fit_idx)
        score.info = {"half_life_s": best if math.isfinite(best) else "inf"}  # type: ignore[attr-defined]
        return score

    def _linear(self, blocks: list[Callable[[np.ndarray], np.ndarray]], fit_idx: np.ndarray
                ) -> Scores:
        """Standardised features (+ blocks) into a logistic regression, C 0.01."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        def inputs(idx: np.ndarray) -> np.ndarray:
            return np.column_stack([self.x[idx], *(b(idx) for b in blocks)])

        scaler = StandardScaler().fit(inputs(fit_idx))
        model = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(inputs(fit_idx)),
                                                           self.y[fit_idx])
        return lambda idx: model.decision_function(scaler.transform(inputs(idx)))

    def _gru(self, fit_idx: np.ndarray, salt: str, stop: str) -> Scores:
        from worker.dataset.split import inner_user_split

        ex = self.d.text.examples
        assert ex is not None
        position = {id(ex[i]): i for i in fit_idx}
        inner_fit, hold = inner_user_split([ex[i] for i in fit_idx], seed=salt)
        tr = np.array([position[id(e)] for e in inner_fit])
        ho = np.array([position[id(e)] for e in hold])
        return fit_gru(self.d.tables["bucket"], self.d.phrase_vectors["bucket"], self.x, self.y,
                       fit_idx, tr, ho, seed=self.seed, stop=stop)


def _pool_all(t: EventTable, vectors: np.ndarray, half_life_s: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(t.length)
    mean = np.zeros((n, vectors.shape[1]))
    newest = np.zeros((n, vectors.shape[1]))
    cos = np.zeros(n)
    for i in range(n):
        m = t.length[i]
        mean[i], newest[i], cos[i] = pooled_stats(vectors[t.phrase[i, :m]], t.age_s[i, :m],
                                                  half_life_s)
    return mean, newest, cos


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
            epochs: int = GRU_EPOCHS, patience: int = GRU_PATIENCE, stop: str = "pr_auc"
            ) -> Scores:
    """The ``gru`` candidate: PCA and standardisation fitted on ``fit_idx``'s events and rows,
    trained on ``train_idx``, early-stopped on ``hold_idx`` (``stop``: PR-AUC, or ``loss``,
    the log-loss), the best epoch kept."""
    import torch
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, log_loss
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    if stop not in ("pr_auc", "loss"):
        raise ValueError(f"stop must be 'pr_auc' or 'loss', got {stop!r}")

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
            self.gru = nn.GRU(seq.shape[-1], GRU_HIDDEN, batch_first=True)
            self.drop = nn.Dropout(0.2)
            self.out = nn.Linear(GRU_HIDDEN + xf.shape[1], 1)

        def forward(self, s: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            _, h = self.gru(s)  # padding in front: the last state is the newest event's
            return self.out(torch.cat([self.drop(h[-1]), f], dim=1)).squeeze(1)

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
    parser.add_argument("--candidates", default=",".join(ALL))
    parser.add_argument("--salts", default=",".join(SALTS))
    parser.add_argument("--no-time", action="store_true", help="skip the time split")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    names = args.candidates.split(",")
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
        settings = {"half_life_s": HALF_LIFE_S, "half_lives_s": [str(h) for h in HALF_LIVES_S],
                    "pool_components": POOL_COMPONENTS, "C": C,
                    "seq_components": SEQ_COMPONENTS, "gru_hidden": GRU_HIDDEN,
                    "gru_epochs": GRU_EPOCHS, "gru_patience": GRU_PATIENCE,
                    "gru_batch": GRU_BATCH, "gru_lr": GRU_LR, "seed": 0}
        args.out.write_text(json.dumps(_floats({"data": data.info, "settings": settings,
                                                "seconds": seconds, "splits": results,
                                                "summary": rows}), indent=1) + "\n",
                            encoding="utf-8")


if __name__ == "__main__":
    main()
