"""A tiny random BERT encoder directory, for fast tests of code that loads encoders.

It uses the MiniLM tokenizer files of the packaged encoder (same vocabulary, so texts
tokenize exactly as in production) and a 2-layer, 32-wide random model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")
TINY_DIM = 32


def write_tiny_encoder(path: str | os.PathLike[str], *, seed: int = 0,
                       max_positions: int = 512) -> Path:
    """Write a random ``BertModel`` (hidden 32, 2 layers) and the MiniLM tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertModel

    from worker.model.config import DEFAULT_ENCODER_PACKAGE
    from worker.model.modeldir import package_dir

    source = package_dir(DEFAULT_ENCODER_PACKAGE)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, path / name)
    config = BertConfig(vocab_size=30522, hidden_size=TINY_DIM, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_positions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(path)
    return path


def write_tiny_pooled_model(path: str | os.PathLike[str], encoder_dir: str | os.PathLike[str],
                            *, seed: int = 0, version: str = "1.0.0",
                            name: str = "tiny-pooled") -> Path:
    """A pooled model directory over the tiny encoder (copied in) with a random head."""
    import numpy as np

    from worker.features import FEATURE_NAMES
    from worker.model import ModelConfig, save_model_dir
    from worker.model.config import WindowModelSection
    from worker.model.pooled import PooledHead

    rng = np.random.default_rng(seed)
    head = PooledHead(rng.normal(scale=0.1, size=len(FEATURE_NAMES)),
                      rng.normal(scale=0.1, size=TINY_DIM), rng.normal(scale=0.1, size=TINY_DIM),
                      0.5, -2.0)
    config = ModelConfig(name=name, version=version, text_dim=TINY_DIM, max_tokens=32,
                         max_chars=200, window_model=WindowModelSection(kind="pooled"))
    return save_model_dir(path, head=head, config=config, encoder=Path(encoder_dir))
