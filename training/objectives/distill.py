"""Embedding distillation: keep the adapted encoder's pooled embeddings near the base model's.

A frozen copy of the base (the teacher) embeds the same inputs; the term is the mean cosine
distance between student and teacher embeddings. It protects what the base already knew (the
out-of-domain tasks) while the domain objective moves the encoder; cf. the feature-space
regularisers of "Learning without Forgetting" (Li & Hoiem 2016) and L2-SP-style anchoring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """student [B, D], teacher [B, D] (no gradient) -> scalar mean(1 - cos(student, teacher))."""
    cos = F.cosine_similarity(student.float(), teacher.float().detach(), dim=-1)  # [B]
    return (1.0 - cos).mean()
