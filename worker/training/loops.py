"""Training loops: the fusion head on frozen text vectors, or encoder + head end to end.

Both minimise BCE with ``pos_weight`` (imbalance) under AdamW, evaluate the validation
set after every epoch, keep the state with the best validation score (average precision
when validation holds both classes, else minus the log loss) and stop after ``patience``
epochs without improvement. The caller applies the prior correction afterwards.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from worker.dataset.progress import bar
from worker.features import ModelInput
from worker.model.head import FusionHead
from worker.model.intent import IntentModel

__all__ = ["FitResult", "FitSettings", "fit_end_to_end", "fit_head", "head_logits",
           "prior_correct", "seed_everything"]


@dataclass(frozen=True, slots=True)
class FitSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    pos_weight: float
    seed: int = 0
    input_dropout: float = 0.0  # frozen mode: dropout on the text vectors while training
    encoder_lr: float = 2e-5  # end-to-end mode: learning rate of the encoder's weights


@dataclass(slots=True)
class FitResult:
    best_epoch: int = 0  # 1-based; 0 = no epoch beat the initial state
    best_score: float = -math.inf
    epochs_run: int = 0
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prior_correct(head: FusionHead, pos_weight: float) -> None:
    """Shift the output bias by ``-log(pos_weight)``: undoes the weighting in the odds, so
    scores are probabilities at the data's base rate again (the ranking does not change)."""
    with torch.no_grad():
        head.fc2.bias -= math.log(pos_weight)


def head_logits(head: FusionHead, text: torch.Tensor, feats: torch.Tensor,
                batch: int = 4096) -> torch.Tensor:
    """Logits on the CPU (computed wherever the head is)."""
    head.eval()
    if not len(text):
        return torch.zeros(0)
    dev = next(head.parameters()).device
    with torch.inference_mode():
        return torch.cat([head(text[i : i + batch].to(dev), feats[i : i + batch].to(dev)).cpu()
                          for i in range(0, len(text), batch)])


def fit_head(head: FusionHead, train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
             val: tuple[torch.Tensor, torch.Tensor, torch.Tensor], s: FitSettings, *,
             progress: bool = True) -> FitResult:
    """Train ``head`` in place on ``(text, features, labels)`` tensors; best state restored."""
    text, feats, y = train
    gen = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(s.pos_weight))
    result, best = FitResult(), copy.deepcopy(head.state_dict())
    stale = 0
    with bar(total=s.epochs, desc="train head", unit="epoch", enabled=progress) as pbar:
        for epoch in range(1, s.epochs + 1):
            head.train()
            order = torch.randperm(len(y), generator=gen)
            total = 0.0
            for start in range(0, len(order), s.batch_size):
                idx = order[start : start + s.batch_size]
                t = text[idx]
                if s.input_dropout:
                    t = nn.functional.dropout(t, s.input_dropout, training=True)
                loss = loss_fn(head(t, feats[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            score, val_loss = _selection_score(head_logits(head, *val[:2]), val[2])
            stale = _track(result, epoch, total / max(1, len(y)), score, val_loss)
            if stale == 0:
                best = copy.deepcopy(head.state_dict())
            pbar.update(1)
            pbar.set_postfix_str(f"loss {total / max(1, len(y)):.4f} val {score:.4f}")
            if stale >= s.patience:
                break
    head.load_state_dict(best)
    head.eval()
    return result


def fit_end_to_end(model: IntentModel, train: tuple[Sequence[ModelInput], Sequence[int]],
                   val: tuple[Sequence[ModelInput], Sequence[int]], s: FitSettings, *,
                   progress: bool = True) -> FitResult:
    """Fine-tune ``model.encoder`` and ``model.head`` together; best state restored."""
    inputs, labels = train
    device = model.device
    gen = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.AdamW([
        {"params": model.encoder.parameters(), "lr": s.encoder_lr},
        {"params": model.head.parameters(), "lr": s.lr},
    ], weight_decay=s.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(s.pos_weight, device=device))
    modules = nn.ModuleDict({"encoder": model.encoder, "head": model.head})
    result, best = FitResult(), copy.deepcopy(modules.state_dict())
    y_all = torch.tensor(labels, dtype=torch.float32)
    stale = 0
    steps = math.ceil(len(inputs) / s.batch_size)
    with bar(total=s.epochs * steps, desc="fine-tune", unit="batch", enabled=progress) as pbar:
        for epoch in range(1, s.epochs + 1):
            modules.train()
            order = torch.randperm(len(inputs), generator=gen).tolist()
            total = 0.0
            for start in range(0, len(order), s.batch_size):
                idx = order[start : start + s.batch_size]
                ids, mask = model.tokenize([inputs[i].text for i in idx])
                feats = torch.tensor([inputs[i].features for i in idx], dtype=torch.float32)
                logits = model.forward_logits(ids.to(device), mask.to(device), feats.to(device))
                loss = loss_fn(logits, y_all[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                pbar.update(1)
            modules.eval()
            logits = _model_logits(model, val[0])
            score, val_loss = _selection_score(logits, torch.tensor(val[1], dtype=torch.float32))
            stale = _track(result, epoch, total / max(1, len(inputs)), score, val_loss)
            if stale == 0:
                best = copy.deepcopy(modules.state_dict())
            pbar.set_postfix_str(f"loss {total / max(1, len(inputs)):.4f} val {score:.4f}")
            if stale >= s.patience:
                break
    modules.load_state_dict(best)
    modules.eval()
    return result


def _model_logits(model: IntentModel, inputs: Sequence[ModelInput]) -> torch.Tensor:
    if not inputs:
        return torch.zeros(0)
    p = torch.tensor(model.score(list(inputs)), dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return torch.log(p / (1 - p)).float()


def _selection_score(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(selection score, val log loss); the score is AP when both classes are present."""
    if len(y) == 0:
        return 0.0, 0.0
    val_loss = float(nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float()))
    if 0 < float(y.sum()) < len(y):
        from sklearn.metrics import average_precision_score

        return float(average_precision_score(y.numpy(), logits.float().numpy())), val_loss
    return -val_loss, val_loss


def _track(result: FitResult, epoch: int, train_loss: float, score: float,
           val_loss: float) -> int:
    """Record an epoch; return epochs since the best (0 = this one is the new best)."""
    result.history.append({"epoch": epoch, "train_loss": round(train_loss, 6),
                           "val_score": round(score, 6), "val_loss": round(val_loss, 6)})
    result.epochs_run = epoch
    if score > result.best_score:
        result.best_score, result.best_epoch = score, epoch
        return 0
    return epoch - result.best_epoch
