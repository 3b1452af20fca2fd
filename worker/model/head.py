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


def linear_fusion_head(text_weight: torch.Tensor, feature_weight: torch.Tensor,
                       bias: float) -> FusionHead:
    """A fusion head that computes the linear logit ``text_weight . LN(text) +
    feature_weight . features + bias`` exactly, in the ordinary head format (same files,
    same loading, same serving code).

    ``LN`` is the head's LayerNorm with unit weight and zero bias (the text vector
    standardised over its dimensions). Two hidden units carry ``z`` and ``-z`` and the
    output is their difference: ``GELU(z) - GELU(-z) = z (Phi(z) + Phi(-z)) = z`` for every
    ``z``, so the GELU does not bend the linear model. Dropout is 0 (and off at eval).
    """
    text_weight = torch.as_tensor(text_weight, dtype=torch.float32).reshape(-1)
    feature_weight = torch.as_tensor(feature_weight, dtype=torch.float32).reshape(-1)
    head = FusionHead(len(text_weight), len(feature_weight), hidden=2, dropout=0.0)
    row = torch.cat([text_weight, feature_weight])
    with torch.no_grad():
        head.norm.weight.fill_(1.0)
        head.norm.bias.zero_()
        head.fc1.weight.copy_(torch.stack([row, -row]))
        head.fc1.bias.copy_(torch.tensor([bias, -bias], dtype=torch.float32))
        head.fc2.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.fc2.bias.zero_()
    return head.eval()
