"""Mean pooling of the last hidden layer over the attention mask (the method's embedding)."""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, D], attention_mask [B, T] -> [B, D] mean over unmasked tokens."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    summed = (hidden * weights).sum(dim=1)  # [B, D]
    return summed / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
