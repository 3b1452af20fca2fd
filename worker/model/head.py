"""The fusion head: pooled text vector + context features -> one logit."""

from __future__ import annotations

import torch
from torch import nn


class FusionHead(nn.Module):
    """LayerNorm(text) ++ features -> Linear -> GELU -> Dropout -> Linear -> logit.

    ``forward(text, features)`` takes ``(batch, text_dim)`` and ``(batch, n_features)``
    and returns ``(batch,)`` logits. State-dict keys: ``norm.*``, ``fc1.*``, ``fc2.*``.
    """

    def __init__(self, text_dim: int, n_features: int, *, hidden: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.n_features = n_features
        self.hidden = hidden
        self.norm = nn.LayerNorm(text_dim)
        self.fc1 = nn.Linear(text_dim + n_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, text: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        normed = self.norm(text)
        x = torch.cat([normed, features.to(normed.dtype)], dim=-1)
        return self.fc2(self.drop(self.act(self.fc1(x)))).squeeze(-1)


def head_shapes(text_dim: int, n_features: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a head with these sizes saves, by state-dict key."""
    return {
        "norm.weight": (text_dim,),
        "norm.bias": (text_dim,),
        "fc1.weight": (hidden, text_dim + n_features),
        "fc1.bias": (hidden,),
        "fc2.weight": (1, hidden),
        "fc2.bias": (1,),
    }
