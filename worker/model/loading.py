"""Building a scoring model from a model directory: an :class:`IntentModel` (the ``text``
kind: encoder and fusion head) or an :class:`EventVectorModel` (the ``pooled`` kind: phrase
encoder, event vectors and pooled head).

The directory's files are read and checked by :mod:`worker.model.modeldir`; this module
puts the pieces together. Torch is imported when a model is loaded, not at import.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ModelError
from worker.model.modeldir import CONFIG_FILE, check_features, encoder_dir, read_config, read_head

if TYPE_CHECKING:
    from worker.model.event_model import EventVectorModel
    from worker.model.intent import IntentModel
    from worker.vectors import VectorStore

__all__ = ["load_model"]


def load_model(path: str | os.PathLike[str], *, device: str = "auto", threads: int | None = None,
               max_tokens: int | None = None, batch_size: int | None = None,
               cache_size: int = 20_000, vector_store: VectorStore | None = None,
               vector_cache_size: int = 50_000, vector_ttl_s: int = 7 * 86_400,
               executor: Executor | None = None) -> IntentModel | EventVectorModel:
    """Load and check a model directory, of either kind (:mod:`worker.model.config`).

    ``device``: ``auto`` (CUDA if available), ``cpu`` or ``cuda``. ``threads`` sets torch's
    CPU threads (left alone when None). ``batch_size``: sequences per forward pass, at most
    (None: 16 on CPU, 64 on CUDA). Text kind: ``max_tokens`` overrides the config's token
    budget (``max_chars`` scales with it); ``cache_size``: window-text vectors kept. Pooled
    kind: ``vector_store`` shares event vectors (None: the process LRU alone),
    ``vector_cache_size`` and ``vector_ttl_s`` size the LRU and the stored vectors' life,
    ``executor`` runs the encoder off the event loop (None: the loop's default).
    """
    import torch

    from worker.model.encoder import load_encoder
    from worker.model.head import FusionHead
    from worker.model.intent import IntentModel, resolve_device

    path = Path(path)
    config = read_config(path)
    check_features(config, path / CONFIG_FILE)
    enc_dir = encoder_dir(path, config)
    tensors = read_head(path, config) if config.kind == "text" else None
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    encoder = load_encoder(enc_dir, pooling=config.pooling)
    if encoder.dim != config.text_dim:
        raise ModelError(f"{path / CONFIG_FILE}: text_dim is {config.text_dim} but the encoder "
                         f"in {enc_dir} has hidden size {encoder.dim}")
    if tensors is None:
        return _event_model(path, config, encoder.to(dev), enc_dir, batch_size=batch_size,
                            store=vector_store, cache_size=vector_cache_size, ttl_s=vector_ttl_s,
                            executor=executor)
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



def _event_model(path: Path, config, encoder, enc_dir: Path, *, batch_size: int | None,
                 store, cache_size: int, ttl_s: int, executor: Executor | None
                 ) -> EventVectorModel:
    from worker.model.event_model import EventVectorModel
    from worker.model.phrase_encoder import TorchPhraseEncoder, encoder_fingerprint
    from worker.model.pooled import PooledHead
    from worker.model.vectors import EventVectors

    head = PooledHead.load(path, dim=config.text_dim, n_features=len(config.feature_names))
    name = config.encoder_package or f"{config.name}-encoder"
    phrase_encoder = TorchPhraseEncoder(encoder, name=name,
                                        fingerprint=encoder_fingerprint(enc_dir),
                                        max_tokens=config.window_model.phrase_max_tokens,
                                        batch_size=batch_size)
    vectors = EventVectors(phrase_encoder, store=store, cache_size=cache_size, ttl_s=ttl_s,
                           executor=executor)
    return EventVectorModel(config=config, head=head, vectors=vectors,
                            device=phrase_encoder.device)
