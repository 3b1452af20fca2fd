"""The text encoder: a Hugging Face tokenizer + ``AutoModel`` from a local directory, pooled.

Tokenizing and padding are split: :func:`encode` truncates each text to the token budget
(from the end, so the newest events stay) without padding, and :func:`collate` pads one
sub-batch to its own longest sequence (dynamic padding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from worker.errors import ModelError

POOLINGS = ("mean", "cls")
CPU_BATCH = 16  # sequences per forward pass on a CPU
CUDA_BATCH = 64  # and on a CUDA device


class TextEncoder(nn.Module):
    """A transformer encoder and its pooling: ``(input_ids, attention_mask) -> (batch, dim)``."""

    def __init__(self, model: nn.Module, tokenizer: object, *, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def encode(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        return encode(self.tokenizer, texts, max_tokens)


def load_encoder(directory: Path, *, pooling: str = "mean") -> TextEncoder:
    """Tokenizer and model from a local directory (never the network); errors are ModelError."""

    from transformers import AutoModel

    directory = Path(directory)
    tokenizer = load_tokenizer(directory)
    try:
        model = AutoModel.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the encoder from {directory}: {exc}") from exc
    return TextEncoder(model.float().eval(), tokenizer, pooling=pooling)


def load_tokenizer(directory: Path) -> object:
    """The encoder directory's tokenizer, set to cut and pad on the right (never the network);
    errors are ModelError. Other runtimes of the same weights tokenize with it too."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ModelError(f"encoder directory {directory} has no config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the encoder from {directory}: {exc}") from exc
    tokenizer.truncation_side = "right"  # the text is newest first: drop the oldest events
    tokenizer.padding_side = "right"
    return tokenizer


def encode(tokenizer: object, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids with special tokens, cut to ``max_tokens`` (the end goes); no padding."""
    out = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    return out["input_ids"]


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of one sub-batch, padded to its longest sequence."""
    width = max(len(row) for row in ids)
    padded = [list(row) + [pad_id] * (width - len(row)) for row in ids]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row in ids]
    return torch.tensor(padded, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def length_batches(ids: Sequence[Sequence[int]], batch_size: int, pad_id: int
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """``(indices, input_ids, attention_mask)`` per sub-batch of ``batch_size``, longest
    sequences first, each padded to its own longest (:func:`collate`), on the CPU."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, mask = collate([ids[i] for i in idx], pad_id)
        yield idx, input_ids, mask


def default_batch(device: torch.device) -> int:
    return CUDA_BATCH if device.type == "cuda" else CPU_BATCH


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on a CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """``cls``: the first token; ``mean``: the mean of the unmasked tokens."""
    if mode == "cls":
        return hidden[:, 0].float()
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
