"""Building a scoring model from a model directory: encoder, head and :class:`IntentModel`.

The directory's files are read and checked by :mod:`worker.model.modeldir`; this module
puts the pieces together. Torch is imported when a model is loaded, not at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ModelError
from worker.model.modeldir import CONFIG_FILE, check_features, encoder_dir, read_config, read_head

if TYPE_CHECKING:
    from worker.model.intent import IntentModel

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], *, device: str = "auto", threads: int | None = None,
               max_tokens: int | None = None, batch_size: int | None = None,
               cache_size: int = 20_000) -> IntentModel:
    """Load and check a model directory.

    ``device``: ``auto`` (CUDA if available), ``cpu`` or ``cuda``. ``threads`` sets torch's
    CPU threads (left alone when None). ``max_tokens`` overrides the config's token budget
    (``max_chars`` scales with it). ``batch_size``: sequences per forward pass, at most
    (None: 16 on CPU, 64 on CUDA).
    """
    import torch

    from worker.model.encoder import load_encoder
    from worker.model.head import FusionHead
    from worker.model.intent import IntentModel, resolve_device

    path = Path(path)
    config = read_config(path)
    check_features(config, path / CONFIG_FILE)
    enc_dir = encoder_dir(path, config)
    tensors = read_head(path, config)
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    encoder = load_encoder(enc_dir, pooling=config.pooling)
    if encoder.dim != config.text_dim:
        raise ModelError(f"{path / CONFIG_FILE}: text_dim is {config.text_dim} but the encoder "
                         f"in {enc_dir} has hidden size {encoder.dim}")
    budget = max_tokens or config.max_tokens
    if budget > encoder.max_positions:
        raise ModelError(f"{path}: max_tokens {budget} exceeds the encoder's "
                         f"{encoder.max_positions} positions")
    head = FusionHead(config.text_dim, len(config.feature_names), hidden=config.head_hidden,
                      dropout=config.head_dropout)
    head.load_state_dict(tensors, strict=True)
    max_chars = config.max_chars
    if max_tokens is not None and max_tokens != config.max_tokens:
        max_chars = max(1, round(config.max_chars * max_tokens / config.max_tokens))
    return IntentModel(encoder=encoder, head=head, config=config, device=dev,
                       max_tokens=budget, max_chars=max_chars, batch_size=batch_size,
                       cache_size=cache_size)

