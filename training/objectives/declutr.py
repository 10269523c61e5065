"""DeCLUTR contrastive loss: NT-Xent over anchor / pooled-positive span embeddings.

Reference: Giorgi et al., "DeCLUTR: Deep Contrastive Learning for Unsupervised Textual
Representations" (ACL 2021); NT-Xent from Chen et al., SimCLR (2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.05


def pool_positives(positives: torch.Tensor, num_positives: int) -> torch.Tensor:
    """positives [N * P, D], grouped by anchor -> [N, D], the mean of each anchor's P positives."""
    total, dim = positives.shape
    if total % num_positives:
        raise ValueError(f"{total} positives do not divide into groups of {num_positives}")
    return positives.view(total // num_positives, num_positives, dim).mean(dim=1)  # [N, D]


def declutr_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    note_index: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """NT-Xent with cosine similarity; anchors [N, D], positives [N, D], note_index [N] -> scalar.

    The 2N embeddings z = [anchors; positives] each form one classification row: row i's
    target is its partner (anchor i <-> positive i); the candidates are every other row.
    Unlike the original, rows from the same note (other anchors of that note and their
    positives) are removed from the candidates: they overlap in content, so pushing them
    apart would punish the encoder for being right. The loss is the mean over the 2N rows.
    """
    n = anchors.shape[0]
    z = F.normalize(torch.cat([anchors, positives]).float(), dim=-1)  # [2N, D]
    logits = z @ z.T / temperature  # [2N, 2N]
    notes = torch.cat([note_index, note_index])  # [2N]
    same_note = notes.unsqueeze(0) == notes.unsqueeze(1)  # [2N, 2N]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(anchors.device)  # [2N]
    keep = ~same_note  # [2N, 2N]
    keep[torch.arange(2 * n, device=anchors.device), partner] = True
    logits = logits.masked_fill(~keep, float("-inf"))  # [2N, 2N]
    return F.cross_entropy(logits, partner)
