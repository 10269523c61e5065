"""One forward pass per objective: a batch in, the scalar training loss and its parts out."""

from __future__ import annotations

import torch
from torch import nn

from training.objectives.category import category_ce_loss, category_objective, supcon_loss
from training.objectives.declutr import declutr_loss, pool_positives
from training.objectives.mlm import masked_lm_loss, select_masked
from training.objectives.pooling import mean_pool
from training.runs.batches import Batch
from training.runs.config import RunConfig
from training.runs.model import EncoderWithHead


def _mlm(model: EncoderWithHead, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    rows, targets = select_masked(hidden, labels)  # [N, D], [N]
    return masked_lm_loss(model.logits(rows), targets)


def mlm_step(model: EncoderWithHead, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    t = batch.tensors
    hidden = model.hidden(t["input_ids"], t["attention_mask"])  # [B, T, D]
    loss = _mlm(model, hidden, t["labels"])
    return loss, {"mlm": float(loss.detach())}


def declutr_step(
    model: EncoderWithHead, batch: Batch, config: RunConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Anchors pass once (masked when MLM is on: DeCLUTR's own single-pass design)."""
    t = batch.tensors
    cfg = config.declutr
    anchor_hidden = model.hidden(t["anchor_ids"], t["anchor_attention_mask"])  # [N, Ta, D]
    anchors = mean_pool(anchor_hidden, t["anchor_attention_mask"])  # [N, D]
    positive_hidden = model.hidden(t["positive_ids"], t["positive_attention_mask"])  # [NP, Tp, D]
    positives = pool_positives(
        mean_pool(positive_hidden, t["positive_attention_mask"]), cfg.num_positives
    )  # [N, D]
    contrastive = declutr_loss(anchors, positives, t["note_index"], cfg.temperature)
    parts = {"contrastive": float(contrastive.detach())}
    loss = contrastive
    if "labels" in t:
        mlm = _mlm(model, anchor_hidden, t["labels"])
        loss = contrastive + cfg.mlm_weight * mlm
        parts["mlm"] = float(mlm.detach())
    return loss, parts


def category_step(
    model: EncoderWithHead, head: nn.Module, batch: Batch, config: RunConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """One pass over the masked notes gives both the MLM logits and the pooled embedding."""
    t = batch.tensors
    cfg = config.category
    hidden = model.hidden(t["input_ids"], t["attention_mask"])  # [B, T, D]
    pooled = mean_pool(hidden, t["attention_mask"])  # [B, D]
    mlm = _mlm(model, hidden, t["labels"])
    if cfg.loss == "linear":
        category = category_ce_loss(head(pooled), t["category"])
    else:
        category = supcon_loss(pooled, t["category"], cfg.temperature)
    loss = category_objective(mlm, category, cfg.weight)
    return loss, {"mlm": float(mlm.detach()), "category": float(category.detach())}
