"""Note-category objective: w x (linear-head cross-entropy | SupCon) on the pooled embedding,
beside the MLM and distillation terms (training/runs/steps.py composes them).

SupCon reference: Khosla et al., "Supervised Contrastive Learning" (NeurIPS 2020), the
L_out form (average of log-probabilities over each anchor's positives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPCON_TEMPERATURE = 0.1


class CategoryHead(nn.Module):
    """Linear head on the pooled embedding: [B, D] -> category logits [B, C]."""

    def __init__(self, dim: int, num_categories: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_categories)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(pooled)  # [B, C]
        return logits


def category_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, C], labels [B] (category indices) -> mean cross-entropy (scalar)."""
    return F.cross_entropy(logits.float(), labels)


def supcon_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = SUPCON_TEMPERATURE
) -> torch.Tensor:
    """embeddings [B, D], labels [B] -> scalar SupCon loss with cosine similarity.

    Same-category notes in the batch are positives, all other notes negatives. A negative
    label means "no category": such a note is only ever a negative. Anchors with no positive
    in the batch contribute nothing; a batch with none at all gives 0 (still attached to the
    graph, so backward works).
    """
    b = embeddings.shape[0]
    z = F.normalize(embeddings.float(), dim=-1)  # [B, D]
    logits = z @ z.T / temperature  # [B, B]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)  # [B, B]
    logits = logits.masked_fill(self_mask, float("-inf"))  # [B, B]
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # [B, B]
    labelled = (labels >= 0).unsqueeze(1)  # [B, 1]
    positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask & labelled  # [B, B]
    counts = positive.sum(dim=1)  # [B]
    has_positive = counts > 0  # [B]
    if not bool(has_positive.any()):
        return (z * 0.0).sum()
    summed = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)  # [B]
    return -(summed[has_positive] / counts[has_positive]).mean()
