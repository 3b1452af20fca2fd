"""Fine-tuning the encoder through the pooled window model.

:func:`finetune_pooled` starts from the frozen fit (:func:`~worker.training.pooled.fit_pooled_head`
on the training rows' float16 vectors, as ``train`` fits it) and then trains the encoder and a
linear head together, end to end:

- per step, a batch of windows; only the batch's *distinct* event phrases go through the
  encoder (with gradients), each once, however many windows hold it;
- the vectors are layer-normalised and pooled in torch (:func:`torch_pool`: the maths of
  :func:`worker.model.pooled.pool`), and the head is linear in
  ``[features, mean, newest, cos]`` as :class:`~worker.model.pooled.PooledHead` is;
- the loss is plain binary cross-entropy, no class weights: the initial head is an unweighted
  logistic regression, so the same objective continues from its optimum, and the scores stay
  probabilities at the training base rate with no prior correction to apply afterwards (a
  ``pos_weight`` would first move the head away from the frozen fit it starts from);
- AdamW with two learning rates, the encoder's far lower than the head's; the head's weights
  are kept in standardised coordinates (each input centred and scaled by its training-row
  mean and spread), so one learning rate suits features of any scale;
- after every epoch the hold-out rows (the inner hold-out users of the fit users, never the
  scored users) are scored *through the serving path* (:func:`serving_model`: the encoder's
  vectors rounded to float16, :func:`~worker.model.pooled.pool`, :meth:`PooledHead.logits`),
  and the state with the best hold-out PR-AUC (average precision) is kept, the frozen start
  included (epoch 0): when no epoch beats it, the frozen fit comes back.

The returned encoder and :class:`~worker.model.pooled.PooledHead` serve as any pooled model:
``save_model_dir(..., head=head, encoder=encoder)`` writes the encoder to ``encoder/``, its
fingerprint (hence the shared vector store's keys) changes with its weights, and the worker
re-encodes phrases with it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.features import ModelInput
from worker.model.pooled import PooledHead, pool
from worker.training.pooled import DEFAULT_C, DEFAULT_HALF_LIFE_S, DEFAULT_POOLED_COMPONENTS

if TYPE_CHECKING:
    import torch

    from worker.model.encoder import TextEncoder
    from worker.model.event_model import EventVectorModel

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_ENCODER_LR", "DEFAULT_EPOCHS", "DEFAULT_HEAD_LR",
           "DEFAULT_PATIENCE", "DEFAULT_WEIGHT_DECAY", "InputScales", "PooledTorchModel",
           "finetune_pooled", "inner_indices", "serving_model", "torch_pool"]

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 4
DEFAULT_BATCH_SIZE = 256
DEFAULT_HEAD_LR = 1e-3
DEFAULT_ENCODER_LR = 2e-5
DEFAULT_PATIENCE = 2
DEFAULT_WEIGHT_DECAY = 0.01
ENCODE_BATCH = 64  # phrases per forward pass while training (sorted by length)
CLIP_NORM = 1.0


def torch_pool(vectors: torch.Tensor, rows: Sequence[Sequence[int]],
               ages_s: Sequence[Sequence[float]], half_life_s: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, newest, cos)`` of each window, as :func:`worker.model.pooled.pool` computes
    them, differentiable in ``vectors`` (layer-normalised rows; ``rows[i]``: window ``i``'s
    events, newest first, as row numbers). ``cos`` is 0 for a one-event window."""
    import torch

    n = len(rows)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if n == 0 or int(lengths.min()) < 1:
        raise ValueError("an empty batch or window has no pooled statistics")
    dev = vectors.device
    flat = torch.tensor([r for window in rows for r in window], dtype=torch.long, device=dev)
    ages = torch.tensor([a for window in ages_s for a in window], dtype=torch.float64)
    owner = torch.repeat_interleave(torch.arange(n), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    weight = torch.pow(0.5, ages / half_life_s)
    weight = weight / torch.zeros(n, dtype=torch.float64).index_add(0, owner, weight)[owner]
    rest_flag = torch.ones(len(flat), dtype=torch.float64)
    rest_flag[starts] = 0.0
    owner, starts = owner.to(dev), starts.to(dev)
    events = vectors[flat]
    dim = vectors.shape[1]
    mean = torch.zeros(n, dim, dtype=vectors.dtype, device=dev).index_add(
        0, owner, events * weight.to(dev, vectors.dtype)[:, None])
    newest = events[starts]
    rest = torch.zeros(n, dim, dtype=vectors.dtype, device=dev).index_add(
        0, owner, events * rest_flag.to(dev, vectors.dtype)[:, None])
    many = (lengths > 1).to(dev)
    # a one-event window's rest is zero: give the norm a stand-in so its gradient stays finite
    rest = torch.where(many[:, None], rest, torch.ones_like(rest))
    dots = (newest * rest).sum(1)
    norms = newest.norm(dim=1) * rest.norm(dim=1)
    valid = many & (norms > 0)
    cos = torch.where(valid, dots / torch.where(valid, norms, torch.ones_like(norms)),
                      torch.zeros_like(norms))
    return mean, newest, cos


@dataclass(frozen=True, slots=True)
class InputScales:
    """Training-row centre and spread of each head input (features, mean, newest, cos)."""

    centre: np.ndarray
    spread: np.ndarray


class PooledTorchModel:
    """The encoder and the pooled head as one trainable model.

    The head's weights live in standardised coordinates: ``logit = sum(w * (x - centre) /
    spread) + b`` over ``x = [features, mean, newest, cos]``; :meth:`export` folds them back
    into a :class:`PooledHead` on the raw inputs (the same function).
    """

    def __init__(self, encoder: TextEncoder, head: PooledHead, scales: InputScales, *,
                 half_life_s: float, max_tokens: int) -> None:
        import torch

        self.encoder = encoder
        self.half_life_s = half_life_s
        self.max_tokens = min(max_tokens, encoder.max_positions)
        self.device = next(encoder.parameters()).device
        self.n_features = head.n_features
        raw = np.concatenate([head.feature_weight, head.mean_weight, head.newest_weight,
                              [head.cos_weight]])
        self.centre = torch.tensor(scales.centre, dtype=torch.float32, device=self.device)
        self.spread = torch.tensor(scales.spread, dtype=torch.float32, device=self.device)
        self.weight = torch.nn.Parameter(
            torch.tensor(raw * scales.spread, dtype=torch.float32, device=self.device))
        self.bias = torch.nn.Parameter(torch.tensor(
            head.bias + float(raw @ scales.centre), dtype=torch.float32, device=self.device))
        self._tokens: dict[str, list[int]] = {}

    def head_parameters(self) -> list[torch.nn.Parameter]:
        return [self.weight, self.bias]

    def state(self) -> dict[str, Any]:
        """A deep copy of every trained value (encoder and head)."""
        return copy.deepcopy({"encoder": self.encoder.state_dict(),
                              "weight": self.weight.detach(), "bias": self.bias.detach()})

    def load_state(self, state: dict[str, Any]) -> None:
        import torch

        self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.weight.copy_(state["weight"])
            self.bias.copy_(state["bias"])

    def export(self) -> PooledHead:
        """The head on raw inputs, float64, for :class:`~worker.model.pooled.PooledHead`."""
        w = self.weight.detach().double().cpu().numpy()
        centre = self.centre.double().cpu().numpy()
        spread = self.spread.double().cpu().numpy()
        raw = w / spread
        bias = float(self.bias.detach().double().cpu()) - float(raw @ centre)
        f, d = self.n_features, (len(raw) - self.n_features - 1) // 2
        return PooledHead(raw[:f].copy(), raw[f:f + d].copy(), raw[f + d:f + 2 * d].copy(),
                          float(raw[-1]), bias)

    def encode(self, phrases: Sequence[str]) -> torch.Tensor:
        """float32 ``(len(phrases), dim)`` vectors with gradients (tokens cached by phrase)."""
        import torch

        from worker.model.encoder import length_batches

        missing = [p for p in phrases if p not in self._tokens]
        if missing:
            self._tokens.update(zip(missing, self.encoder.encode(missing, self.max_tokens),
                                    strict=True))
        ids = [self._tokens[p] for p in phrases]
        parts, order = [], []
        for idx, input_ids, mask in length_batches(ids, ENCODE_BATCH, self.encoder.pad_id):
            parts.append(self.encoder(input_ids.to(self.device), mask.to(self.device)))
            order.extend(idx)
        inverse = torch.empty(len(order), dtype=torch.long, device=self.device)
        inverse[torch.tensor(order, device=self.device)] = torch.arange(len(order),
                                                                        device=self.device)
        return torch.cat(parts)[inverse]

    def logits(self, inputs: Sequence[ModelInput]) -> torch.Tensor:
        """``(len(inputs),)`` logits; gradients flow into the encoder unless disabled."""
        import torch

        index: dict[str, int] = {}
        rows = [[index.setdefault(p, len(index)) for p in item.events.phrases]  # type: ignore[union-attr]
                for item in inputs]
        vectors = self.encode(list(index))
        normed = torch.nn.functional.layer_norm(vectors, (vectors.shape[1],), eps=1e-5)
        mean, newest, cos = torch_pool(normed, rows, [i.events.ages_s for i in inputs],  # type: ignore[union-attr]
                                       self.half_life_s)
        feats = torch.tensor([i.features for i in inputs], dtype=torch.float32,
                             device=self.device)
        x = torch.cat([feats, mean, newest, cos[:, None]], dim=1)
        return ((x - self.centre) / self.spread) @ self.weight + self.bias


def serving_model(encoder: TextEncoder, head: PooledHead, *, half_life_s: float,
                  phrase_max_tokens: int, phrase_price: str = "bucket",
                  name: str = "finetuned") -> EventVectorModel:
    """The worker's scoring model over ``encoder`` and ``head`` (no shared store, no LRU):
    vectors rounded to float16, :func:`~worker.model.pooled.pool`, :meth:`PooledHead.logits`.
    The encoder id's fingerprint part is the id of the encoder object, not of its files: the
    model lives for one scoring pass (save the model directory to serve it)."""
    from worker.model.config import ModelConfig, WindowModelSection
    from worker.model.event_model import EventVectorModel
    from worker.model.phrase_encoder import TorchPhraseEncoder
    from worker.model.vectors import EventVectors

    config = ModelConfig(name=name, version="0", text_dim=encoder.dim,
                         window_model=WindowModelSection(
                             kind="pooled", half_life_s=half_life_s, phrase_price=phrase_price,
                             phrase_max_tokens=phrase_max_tokens))
    phrase_encoder = TorchPhraseEncoder(encoder, name=name, fingerprint=f"{id(encoder):x}",
                                        max_tokens=phrase_max_tokens)
    return EventVectorModel(config=config, head=head,
                            vectors=EventVectors(phrase_encoder, cache_size=0))


def inner_indices(user_ids: Sequence[str], fit_idx: Sequence[int], *, seed: str,
                  frac: float | None = None) -> tuple[list[int], list[int]]:
    """``(train_idx, hold_idx)``: the rows ``fit_idx`` (``user_ids[i]`` is row ``i``'s user)
    split by user as :func:`worker.dataset.split.inner_user_split` splits examples (about
    ``frac`` of their users held out; the split's default fraction when None)."""
    from types import SimpleNamespace

    from worker.dataset.split import INNER_FRAC, inner_user_split

    rows = [SimpleNamespace(user_id=user_ids[i], row=int(i)) for i in fit_idx]
    train, hold = inner_user_split(rows, seed=seed,  # type: ignore[arg-type]
                                   frac=INNER_FRAC if frac is None else frac)
    return [r.row for r in train], [r.row for r in hold]


def finetune_pooled(encoder_dir: Path, inputs: Sequence[ModelInput], labels: Sequence[int],
                    train_idx: Sequence[int], hold_idx: Sequence[int], *,
                    components: int = DEFAULT_POOLED_COMPONENTS, c: float = DEFAULT_C,
                    half_life_s: float = DEFAULT_HALF_LIFE_S, phrase_max_tokens: int = 64,
                    epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE,
                    head_lr: float = DEFAULT_HEAD_LR, encoder_lr: float = DEFAULT_ENCODER_LR,
                    weight_decay: float = DEFAULT_WEIGHT_DECAY, patience: int = DEFAULT_PATIENCE,
                    seed: int = 0, device: str = "cpu"
                    ) -> tuple[TextEncoder, PooledHead, dict[str, Any]]:
    """Fine-tune the encoder of ``encoder_dir`` and a pooled head on the rows ``train_idx``,
    keeping the epoch (0: the frozen fit) with the best PR-AUC on the rows ``hold_idx``
    (module doc). Returns the encoder (eval mode), the head and a summary: the frozen fit's
    info, the best epoch, and per epoch the training loss, the hold-out PR-AUC and log loss,
    how far the encoder's weights moved (relative L2) and the seconds it took."""
    import torch

    from worker.model.encoder import load_encoder
    from worker.training.loops import seed_everything

    train_idx = [int(i) for i in train_idx]
    hold_idx = [int(i) for i in hold_idx]
    y_all = np.asarray(labels, dtype=int)
    if set(train_idx) & set(hold_idx):
        raise ValueError("train_idx and hold_idx share rows")
    if not hold_idx:
        raise ValueError("fine-tuning needs hold-out rows to stop on")
    if len(set(y_all[train_idx].tolist())) < 2:
        raise ValueError("fine-tuning needs both classes in the training rows")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0 < encoder_lr <= head_lr:
        raise ValueError(f"need 0 < encoder_lr <= head_lr, got {encoder_lr}, {head_lr}")
    for i in (*train_idx, *hold_idx):
        if inputs[i].events is None or not inputs[i].events.phrases:  # type: ignore[union-attr]
            raise ValueError("fine-tuning needs inputs built with a phrase_price")

    t_start = time.perf_counter()
    seed_everything(seed)
    dev = torch.device(device)
    encoder = load_encoder(Path(encoder_dir), pooling="mean").to(dev)
    train_inputs = [inputs[i] for i in train_idx]
    hold_inputs = [inputs[i] for i in hold_idx]
    y_train = torch.tensor(y_all[train_idx], dtype=torch.float32, device=dev)
    y_hold = y_all[hold_idx]

    head, init_info, scales = _frozen_fit(encoder, train_inputs, y_all[train_idx],
                                          components=components, c=c, half_life_s=half_life_s,
                                          phrase_max_tokens=phrase_max_tokens)
    model = PooledTorchModel(encoder, head, scales, half_life_s=half_life_s,
                             max_tokens=phrase_max_tokens)
    start = [p.detach().clone() for p in encoder.parameters()]
    start_norm = math.sqrt(sum(float((p.double() ** 2).sum()) for p in start))
    opt = torch.optim.AdamW([{"params": list(encoder.parameters()), "lr": encoder_lr},
                             {"params": model.head_parameters(), "lr": head_lr}],
                            weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)

    def hold_scores() -> tuple[float, float]:
        served = serving_model(encoder, model.export(), half_life_s=half_life_s,
                               phrase_max_tokens=phrase_max_tokens)
        return _selection_score(y_hold, np.asarray(served.score(hold_inputs)))

    score, hold_loss = hold_scores()
    history: list[dict[str, Any]] = [{
        "epoch": 0, "train_loss": None, "hold_pr_auc": round(score, 6),
        "hold_log_loss": round(hold_loss, 6), "encoder_shift": 0.0,
        "seconds": round(time.perf_counter() - t_start, 2)}]
    best_score, best_epoch, best = score, 0, model.state()
    phrases_encoded = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        encoder.train()
        order = torch.randperm(len(train_inputs), generator=gen).tolist()
        total = 0.0
        for begin in range(0, len(order), batch_size):
            idx = order[begin:begin + batch_size]
            batch = [train_inputs[i] for i in idx]
            phrases_encoded += len({p for item in batch for p in item.events.phrases})  # type: ignore[union-attr]
            loss = loss_fn(model.logits(batch), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*encoder.parameters(), *model.head_parameters()],
                                           CLIP_NORM)
            opt.step()
            total += float(loss.detach()) * len(idx)
        encoder.eval()
        score, hold_loss = hold_scores()
        shift = math.sqrt(sum(float(((p.detach() - s).double() ** 2).sum())
                              for p, s in zip(encoder.parameters(), start, strict=True)))
        history.append({"epoch": epoch, "train_loss": round(total / len(order), 6),
                        "hold_pr_auc": round(score, 6), "hold_log_loss": round(hold_loss, 6),
                        "encoder_shift": round(shift / start_norm, 8),
                        "seconds": round(time.perf_counter() - t0, 2)})
        log.info("fine-tune epoch %d: train loss %.4f, hold-out PR-AUC %.4f (%.0fs)", epoch,
                 total / len(order), score, time.perf_counter() - t0)
        if score > best_score:
            best_score, best_epoch, best = score, epoch, model.state()
        elif epoch - best_epoch >= patience:
            break
    model.load_state(best)
    encoder.eval()
    info = {"init": init_info, "best_epoch": best_epoch, "best_hold_pr_auc": round(best_score, 6),
            "epochs_run": len(history) - 1, "history": history,
            "stopped_on": "PR-AUC of the hold-out rows (inner hold-out users of the fit users)",
            "loss": "binary cross-entropy, no class weights",
            "rows": {"train": len(train_idx), "hold": len(hold_idx)},
            "phrases_encoded_training": phrases_encoded,
            "settings": {"components": components, "C": c, "half_life_s": half_life_s,
                         "phrase_max_tokens": phrase_max_tokens, "epochs": epochs,
                         "batch_size": batch_size, "head_lr": head_lr, "encoder_lr": encoder_lr,
                         "weight_decay": weight_decay, "patience": patience, "seed": seed,
                         "clip_norm": CLIP_NORM},
            "seconds": round(time.perf_counter() - t_start, 2)}
    return encoder, model.export(), info


def _frozen_fit(encoder: TextEncoder, inputs: Sequence[ModelInput], labels: np.ndarray, *,
                components: int, c: float, half_life_s: float, phrase_max_tokens: int
                ) -> tuple[PooledHead, dict[str, Any], InputScales]:
    """The frozen pooled fit on these rows (float16 vectors, as ``train`` fits it) and the
    centre and spread of its inputs on them."""
    from worker.model.phrase_encoder import TorchPhraseEncoder
    from worker.model.pooled import layer_norm
    from worker.model.vectors import EventVectors
    from worker.training.pooled import fit_pooled_head

    index: dict[str, int] = {}
    rows = [[index.setdefault(p, len(index)) for p in item.events.phrases]  # type: ignore[union-attr]
            for item in inputs]
    phrase_encoder = TorchPhraseEncoder(encoder, name="frozen", fingerprint="start",
                                        max_tokens=phrase_max_tokens)
    vectors = EventVectors(phrase_encoder, cache_size=0).vectors_here(list(index))
    stats = pool(rows, [i.events.ages_s for i in inputs], layer_norm(vectors),  # type: ignore[union-attr]
                 half_life_s)
    feats = np.array([i.features for i in inputs], dtype=np.float64)
    head, info = fit_pooled_head(stats, feats, labels, range(len(inputs)),
                                 components=components, c=c)
    x = np.concatenate([feats, stats.mean, stats.newest, stats.cos[:, None]], axis=1)
    spread = x.std(0)
    spread[spread < 1e-8] = 1.0
    return head, info, InputScales(x.mean(0), spread)


def _selection_score(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(selection score, log loss) of probabilities ``p``: the score is the PR-AUC (average
    precision) when ``y`` holds both classes, else minus the log loss."""
    from sklearn.metrics import average_precision_score

    q = np.clip(p, 1e-12, 1 - 1e-12)
    loss = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    if 0 < y.sum() < len(y):
        return float(average_precision_score(y, p)), loss
    return -loss, loss
