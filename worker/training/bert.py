"""The BERT side of training: load the encoder, embed (frozen) or fine-tune, score."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from worker.features import FEATURE_NAMES, ModelInput
from worker.model.config import ModelConfig
from worker.model.encoder import TextEncoder, load_encoder
from worker.model.head import FusionHead
from worker.model.intent import IntentModel, resolve_device
from worker.model.modeldir import ENCODER_PACKAGES
from worker.training.embed import EmbeddingCache, embed_texts, encoder_id
from worker.training.linear import fit_linear_head
from worker.training.loops import (
    FitResult,
    FitSettings,
    fit_end_to_end,
    fit_head,
    head_logits,
    prior_correct,
    seed_everything,
)

__all__ = ["BertFit", "BertRun", "BertSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BertSettings:
    epochs: int
    batch_size: int
    lr: float
    encoder_lr: float
    weight_decay: float
    patience: int
    seed: int
    input_dropout: float
    pos_weight: float | None
    head_hidden: int
    head_dropout: float
    max_tokens: int
    max_chars: int
    finetune: bool
    device: str
    head: str = "mlp"  # "linear": logistic regression (frozen encoder only); "mlp": trained
    pca_components: int = 4  # linear head: principal components of the text vectors
    l2_c: float = 0.01  # linear head: inverse L2 strength


@dataclass(slots=True)
class BertFit:
    """A fitted model (prior-corrected) and ``predict(indices) -> probabilities``."""

    model: IntentModel
    fit: FitResult
    pos_weight: float
    predict: Callable[[Sequence[int]], np.ndarray]
    info: dict = field(default_factory=dict)  # linear head: what fit_linear_head reports


class BertRun:
    """Fits of the BERT fusion model on one set of examples (their inputs and labels)."""

    def __init__(self, encoder_dir: Path, inputs: Sequence[ModelInput], labels: np.ndarray,
                 settings: BertSettings, *, progress: bool = True,
                 embedding_cache: str | os.PathLike[str] | None = None) -> None:
        self.encoder_dir = Path(encoder_dir)
        self.inputs = list(inputs)
        self.labels = np.asarray(labels, dtype=int)
        self.s = settings
        self.progress = progress
        self.cache_path = Path(embedding_cache) if embedding_cache else None
        self.device = resolve_device(settings.device)
        self.features = torch.tensor([i.features for i in self.inputs],
                                     dtype=torch.float32).reshape(-1, len(FEATURE_NAMES))
        self.vectors: torch.Tensor | None = None
        self.main: BertFit | None = None
        self._encoder: TextEncoder | None = None

    @property
    def text_dim(self) -> int:
        return self._load().dim

    def prepare(self) -> float:
        """Load the encoder; frozen mode: embed every input text (cached). Returns seconds."""
        t0 = time.perf_counter()
        encoder = self._load()
        if not self.s.finetune:
            cache = EmbeddingCache(encoder_id(self.encoder_dir, pooling=encoder.pooling,
                                              max_tokens=self.s.max_tokens))
            if self.cache_path:
                log.info("embedding cache: %d vectors from %s", cache.load(self.cache_path),
                         self.cache_path)
            model = self._model(encoder, self._head(encoder.dim))
            vectors = embed_texts(model, [i.text for i in self.inputs], cache=cache,
                                  progress=self.progress)
            self.vectors = torch.from_numpy(vectors)
            if self.cache_path:
                cache.save(self.cache_path)
        return time.perf_counter() - t0

    def fit(self, train_idx: Sequence[int], val_idx: Sequence[int], *,
            progress: bool | None = None, fresh: bool = False) -> BertFit:
        """Fit a new head (and, fine-tuning, a fresh copy of the encoder) on ``train_idx``,
        selecting on ``val_idx``. The first fit without ``fresh`` becomes :attr:`main`."""
        progress = self.progress if progress is None else progress
        if self.s.head == "linear":
            result = self._fit_linear(train_idx)
            if not fresh and self.main is None:
                self.main = result
            return result
        y = self.labels[list(train_idx)]
        pos = int(y.sum())
        pos_weight = self.s.pos_weight or (len(y) - pos) / max(1, pos)
        fs = FitSettings(epochs=self.s.epochs, batch_size=self.s.batch_size, lr=self.s.lr,
                         weight_decay=self.s.weight_decay, patience=self.s.patience,
                         pos_weight=pos_weight, seed=self.s.seed,
                         input_dropout=self.s.input_dropout, encoder_lr=self.s.encoder_lr)
        if self.s.finetune:
            result = self._fit_end_to_end(train_idx, val_idx, fs, progress, fresh)
        else:
            result = self._fit_frozen(train_idx, val_idx, fs, progress)
        if not fresh and self.main is None:
            self.main = result
        return result

    def encoder_for_saving(self, source: str | os.PathLike[str]) -> str | Path | TextEncoder:
        """What ``save_model_dir`` gets: the package name or directory (frozen), else the
        fine-tuned encoder."""
        if self.s.finetune:
            if self.main is None:
                raise RuntimeError("nothing fitted yet")
            return self.main.model.encoder
        if isinstance(source, str) and source in ENCODER_PACKAGES:
            return source
        return self.encoder_dir

    def _fit_frozen(self, train_idx: Sequence[int], val_idx: Sequence[int], fs: FitSettings,
                    progress: bool) -> BertFit:
        if self.vectors is None:
            raise RuntimeError("call prepare() first")
        vectors, feats = self.vectors, self.features
        y = torch.from_numpy(self.labels).float()

        def part(idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            ix = torch.as_tensor(list(idx), dtype=torch.long)
            return vectors[ix], feats[ix], y[ix]

        encoder = self._load()
        head = self._head(encoder.dim)
        result = fit_head(head, part(train_idx), part(val_idx), fs, progress=progress)
        prior_correct(head, fs.pos_weight)

        def predict(idx: Sequence[int]) -> np.ndarray:
            t, f, _ = part(idx)
            return torch.sigmoid(head_logits(head, t, f)).numpy().astype(float)

        return BertFit(self._model(encoder, head), result, fs.pos_weight, predict)

    def _fit_linear(self, train_idx: Sequence[int]) -> BertFit:
        if self.s.finetune:
            raise ValueError("the linear head needs a frozen encoder")
        if self.vectors is None:
            raise RuntimeError("call prepare() first")
        head, info = fit_linear_head(self.vectors, self.features, self.labels, train_idx,
                                     components=self.s.pca_components, c=self.s.l2_c)
        vectors, feats = self.vectors, self.features

        def predict(idx: Sequence[int]) -> np.ndarray:
            ix = torch.as_tensor(list(idx), dtype=torch.long)
            return torch.sigmoid(head_logits(head, vectors[ix], feats[ix])).numpy().astype(float)

        return BertFit(self._model(self._load(), head), FitResult(), 1.0, predict, info)

    def _fit_end_to_end(self, train_idx: Sequence[int], val_idx: Sequence[int],
                        fs: FitSettings, progress: bool, fresh: bool) -> BertFit:
        encoder = self._load() if not fresh and self.main is None else self._load(new=True)
        model = self._model(encoder, self._head(encoder.dim))
        inputs, labels = self.inputs, self.labels.tolist()
        result = fit_end_to_end(model, ([inputs[i] for i in train_idx],
                                        [labels[i] for i in train_idx]),
                                ([inputs[i] for i in val_idx], [labels[i] for i in val_idx]),
                                fs, progress=progress)
        prior_correct(model.head, fs.pos_weight)

        def predict(idx: Sequence[int]) -> np.ndarray:
            return np.asarray(model.score([inputs[i] for i in idx]), dtype=float)

        return BertFit(model, result, fs.pos_weight, predict)

    def _load(self, *, new: bool = False) -> TextEncoder:
        if new:
            return load_encoder(self.encoder_dir, pooling="mean")
        if self._encoder is None:
            self._encoder = load_encoder(self.encoder_dir, pooling="mean")
        return self._encoder

    def _head(self, dim: int) -> FusionHead:
        seed_everything(self.s.seed)
        return FusionHead(dim, len(FEATURE_NAMES), hidden=self.s.head_hidden,
                          dropout=self.s.head_dropout)

    def _model(self, encoder: TextEncoder, head: FusionHead) -> IntentModel:
        config = ModelConfig(name="training", version="0", text_dim=encoder.dim,
                             max_tokens=self.s.max_tokens, max_chars=self.s.max_chars,
                             head_hidden=head.hidden, head_dropout=head.drop.p)
        return IntentModel(encoder=encoder, head=head, config=config, device=self.device)
