"""The shipped default model directory (``worker/model/default``) and how to recreate it.

The shipped model is a pooled window model over event vectors, trained on the REES46 dev
slice on the packaged MiniLM encoder, with the GBDT baseline and the training-time score
distribution (``score_reference``) beside it. It was made, and is remade, by::

    intent-worker train ../shared/data/rees46/events-dev.csv --format rees46 \
        --out worker/model/default --version 2.0.0 --overwrite

:func:`init_default` writes an *untrained* head of the same shape (deterministic, seed 0):
a fixture for tests and a starting point, never shipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from worker.features import FEATURE_NAMES
from worker.model.config import DEFAULT_ENCODER_PACKAGE, ModelConfig
from worker.model.modeldir import save_model_dir

DEFAULT_NAME = "intent-minilm"
DEFAULT_VERSION = "0.0.1-untrained"
DEFAULT_TEXT_DIM = 384  # MiniLM-L6-H384
DEFAULT_MAX_TOKENS = 128
DEFAULT_MAX_CHARS = 768
DEFAULT_HIDDEN = 128
DEFAULT_DROPOUT = 0.1
SEED = 0


def default_model_path() -> Path:
    """The shipped model directory inside the installed package."""
    return Path(__file__).resolve().parent / "default"


def init_default(path: str | os.PathLike[str], *, created: str = "") -> Path:
    """Write an untrained window-text model directory (the text kind) at ``path``."""
    import torch

    from worker.model.head import FusionHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        head = FusionHead(DEFAULT_TEXT_DIM, len(FEATURE_NAMES), hidden=DEFAULT_HIDDEN,
                          dropout=DEFAULT_DROPOUT)
    config = ModelConfig(
        name=DEFAULT_NAME, version=DEFAULT_VERSION, created=created, text_dim=DEFAULT_TEXT_DIM,
        pooling="mean", max_tokens=DEFAULT_MAX_TOKENS, max_chars=DEFAULT_MAX_CHARS,
        feature_names=FEATURE_NAMES, head_hidden=DEFAULT_HIDDEN, head_dropout=DEFAULT_DROPOUT,
        trained=False,
    )
    return save_model_dir(path, head=head, config=config,
                          encoder=DEFAULT_ENCODER_PACKAGE, overwrite=True)
