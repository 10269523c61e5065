"""Continued masked-language modelling: 15% masking (80/10/10), loss at masked positions only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking. input_ids [B, T] -> (masked inputs [B, T], labels [B, T]).

    Each non-special token is selected with `probability`; of those 80% become [MASK], 10% a
    random token, 10% stay. labels hold the original id at selected positions, IGNORE_INDEX
    elsewhere. At least one token per batch is selected so the loss is always defined.
    """
    device = input_ids.device
    candidates = ~special_tokens_mask.bool()  # [B, T]
    draws = torch.rand(input_ids.shape, generator=generator).to(device)  # [B, T]
    selected = (draws < probability) & candidates  # [B, T]
    if not bool(selected.any()) and bool(candidates.any()):
        # Short blocks can draw nothing; mask the highest-draw candidate rather than skip.
        flat = torch.where(candidates, draws, torch.full_like(draws, -1.0)).flatten()
        selected.view(-1)[int(flat.argmax())] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator).to(device)  # [B, T]
    replace_mask = selected & (action < 0.8)  # [B, T]
    replace_random = selected & (action >= 0.8) & (action < 0.9)  # [B, T]
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(device)
    masked = input_ids.clone()
    masked[replace_mask] = mask_token_id
    masked[replace_random] = random_ids[replace_random]
    return masked, labels


def select_masked(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [B, T, D], labels [B, T] -> (hidden at masked positions [N, D], targets [N]).

    Projecting only these N rows onto the vocabulary (not all B*T) is what keeps MLM
    affordable on CPU: the vocabulary projection dominates the step otherwise.
    """
    positions = labels != IGNORE_INDEX  # [B, T]
    return hidden[positions], labels[positions]  # [N, D], [N]


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [N, V] at masked positions, targets [N] -> mean cross-entropy (scalar)."""
    return F.cross_entropy(logits.float(), targets)
