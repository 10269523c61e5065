"""One training step per objective: a batch in, the loss's parts out, gradients accumulated.

`loss` computes the full scalar loss of a batch in one pass (held-out evaluation, and training
without a gradient cache); `backward` adds the batch's gradients, through the gradient cache
when DeCLUTR sets `chunk_size`. The loss of every objective is

    mlm_weight x MLM + objective term + distill.weight x (1 - cos(student, base teacher))

with the MLM term only where the objective has one and the weight is above zero.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.objectives.category import category_ce_loss, supcon_loss
from training.objectives.declutr import declutr_loss, pool_positives
from training.objectives.distill import embedding_distill_loss
from training.objectives.mlm import IGNORE_INDEX, masked_lm_loss, select_masked
from training.objectives.pooling import mean_pool
from training.runs.batches import Batch
from training.runs.config import RunConfig
from training.runs.gradcache import Chunk, cached_backward, split_chunks
from training.runs.model import EncoderWithHead

Parts = dict[str, float]
Scale = Callable[[torch.Tensor], torch.Tensor]
Hidden = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ids, mask [B, T] -> [B, T, D]
# Sequences per forward pass when a batch of spans is encoded shortest-padding-first: spans of
# 32-256 tokens padded to the batch's longest wasted about half of every step (positives are
# skewed short); sorted passes of 16 pad each pass to its own longest.
ROWS_PER_PASS = 16


def length_order(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, inverse): rows sorted longest first, and the permutation that restores them."""
    order = torch.argsort(mask.sum(dim=1), descending=True, stable=True)  # [B]
    return order, torch.argsort(order)


def encode_by_length(
    hidden_of: Hidden,
    ids: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor | None = None,
    rows: int = ROWS_PER_PASS,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Mean-pooled embeddings [B, D] in the rows' own order, computed in length-sorted passes
    of `rows` sequences each trimmed to its longest; with MLM `labels`, also each pass's
    (hidden rows at masked positions [N, D], targets [N]). The same values as one padded pass
    (padding is masked out of attention and pooling), for less compute."""
    order, inverse = length_order(mask)
    pooled, masked = [], []
    for chunk in split_chunks(
        ids[order], mask[order], None if labels is None else labels[order], rows
    ):
        hidden = hidden_of(chunk.input_ids, chunk.attention_mask)  # [b, t, D]
        pooled.append(mean_pool(hidden, chunk.attention_mask))  # [b, D]
        if chunk.labels is not None:
            masked.append(select_masked(hidden, chunk.labels))
    return torch.cat(pooled)[inverse], masked


@dataclass
class StepModels:
    """What a step runs: the encoder, the category head, the teacher, the resolved weights."""

    model: EncoderWithHead
    config: RunConfig
    mlm_weight: float  # "auto" resolved against the base checkpoint
    head: nn.Module | None = None  # category objective, linear loss
    teacher: nn.Module | None = None  # frozen base, when distill.weight > 0

    def teacher_pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's pooled embeddings [B, D] (no gradient), in length-sorted passes."""
        teacher = self.teacher
        assert teacher is not None

        def hidden_of(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
            return out

        with torch.no_grad():
            return encode_by_length(hidden_of, input_ids, attention_mask)[0]


def _mlm(model: EncoderWithHead, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    rows, targets = select_masked(hidden, labels)  # [N, D], [N]
    return masked_lm_loss(model.logits(rows), targets)


def _distill(
    sm: StepModels, pooled: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, parts: Parts
) -> torch.Tensor:
    """The weighted distillation term (0 when off); records its unweighted value in parts."""
    weight = sm.config.distill.weight
    if weight == 0 or sm.teacher is None:
        return pooled.new_zeros(())
    term = embedding_distill_loss(pooled, sm.teacher_pool(ids, mask))
    parts["distill"] = float(term.detach())
    return weight * term


def mlm_loss(sm: StepModels, batch: Batch) -> tuple[torch.Tensor, Parts]:
    t = batch.tensors
    hidden = sm.model.hidden(t["input_ids"], t["attention_mask"])  # [B, T, D]
    loss = _mlm(sm.model, hidden, t["labels"])
    parts = {"mlm": float(loss.detach())}
    if sm.config.distill.weight > 0:
        pooled = mean_pool(hidden, t["attention_mask"])  # [B, D]
        loss = loss + _distill(sm, pooled, t["input_ids"], t["attention_mask"], parts)
    return loss, parts


def _declutr_embedding_loss(
    sm: StepModels,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    teacher: tuple[torch.Tensor, torch.Tensor] | None,
    note_index: torch.Tensor,
    parts: Parts,
) -> torch.Tensor:
    """anchors [N, D], positives [N * P, D] (grouped by anchor) -> contrastive + distill.

    `teacher` holds the frozen teacher's embeddings of the same anchors and positives: the
    distillation term covers both, so short passages (the shape of a query) keep the base's
    behaviour as well as long spans."""
    cfg = sm.config.declutr
    pooled = pool_positives(positives, cfg.num_positives)  # [N, D]
    contrastive = declutr_loss(anchors, pooled, note_index, cfg.temperature)
    parts["contrastive"] = float(contrastive.detach())
    loss = contrastive
    if teacher is not None:
        term = embedding_distill_loss(
            torch.cat([anchors, positives]), torch.cat([teacher[0], teacher[1]])
        )
        parts["distill"] = float(term.detach())
        loss = loss + sm.config.distill.weight * term
    return loss


def _declutr_teacher(
    sm: StepModels, t: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The teacher's embeddings of the batch's anchors [N, D] and positives [N * P, D]."""
    if sm.config.distill.weight == 0 or sm.teacher is None:
        return None
    anchors = sm.teacher_pool(t["anchor_ids"], t["anchor_attention_mask"])
    positives = sm.teacher_pool(t["positive_ids"], t["positive_attention_mask"])
    return anchors, positives


def declutr_loss_one_pass(sm: StepModels, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """Anchors pass once (masked when MLM is on: DeCLUTR's own single-pass design); anchors
    and positives are each encoded in length-sorted passes."""
    t = batch.tensors
    ids, mask = t["anchor_ids"], t["anchor_attention_mask"]
    labels = t["labels"] if "labels" in t and sm.mlm_weight > 0 else None
    anchors, masked = encode_by_length(sm.model.hidden, ids, mask, labels)  # [N, D]
    positives, _ = encode_by_length(
        sm.model.hidden, t["positive_ids"], t["positive_attention_mask"]
    )  # [N * P, D]
    teacher = _declutr_teacher(sm, t)
    parts: Parts = {}
    loss = _declutr_embedding_loss(sm, anchors, positives, teacher, t["note_index"], parts)
    if labels is not None:
        rows = torch.cat([r for r, _ in masked])  # [N, D]
        targets = torch.cat([y for _, y in masked])  # [N]
        mlm = masked_lm_loss(sm.model.logits(rows), targets)
        loss = loss + sm.mlm_weight * mlm
        parts["mlm"] = float(mlm.detach())
    return loss, parts


def declutr_backward_cached(
    sm: StepModels, batch: Batch, scale: Scale, autocast: Callable[[], AbstractContextManager[Any]]
) -> tuple[float, Parts]:
    """The same loss and gradients as declutr_loss_one_pass, `chunk_size` sequences at a time."""
    t = batch.tensors
    size = sm.config.declutr.chunk_size
    assert size is not None
    labels = t.get("labels") if sm.mlm_weight > 0 else None
    # Chunks are cut from length-sorted rows (each trimmed to its longest); `restore` puts the
    # embeddings back in the batch's order for the loss.
    a_order, a_restore = length_order(t["anchor_attention_mask"])
    p_order, p_restore = length_order(t["positive_attention_mask"])
    groups = {
        "anchors": split_chunks(
            t["anchor_ids"][a_order],
            t["anchor_attention_mask"][a_order],
            None if labels is None else labels[a_order],
            size,
        ),
        "positives": split_chunks(
            t["positive_ids"][p_order], t["positive_attention_mask"][p_order], None, size
        ),
    }
    with autocast():
        teacher = _declutr_teacher(sm, t)
    parts: Parts = {}

    def embed(chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            hidden = sm.model.hidden(chunk.input_ids, chunk.attention_mask)  # [b, T, D]
        return mean_pool(hidden, chunk.attention_mask), hidden

    def loss_of(embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        anchors = embeddings["anchors"][a_restore]  # [N, D], batch order
        positives = embeddings["positives"][p_restore]  # [N * P, D]
        return _declutr_embedding_loss(sm, anchors, positives, teacher, t["note_index"], parts)

    chunk_loss = None
    mlm_total = 0.0
    if labels is not None:
        masked = int((labels != IGNORE_INDEX).sum())  # the whole batch's masked positions

        def chunk_loss(name: str, hidden: torch.Tensor, chunk: Chunk) -> torch.Tensor:
            nonlocal mlm_total
            if name != "anchors" or chunk.labels is None:
                return hidden.new_zeros(())
            rows, targets = select_masked(hidden, chunk.labels)
            if targets.numel() == 0:
                return hidden.new_zeros(())
            summed = F.cross_entropy(sm.model.logits(rows).float(), targets, reduction="sum")
            mlm_total += float(summed.detach())
            # the batch mean, assembled chunk by chunk
            return sm.mlm_weight * summed / max(1, masked)

    loss = float(cached_backward(embed, groups, loss_of, scale=scale, chunk_loss=chunk_loss))
    if labels is not None:
        mlm = mlm_total / max(1, int((labels != IGNORE_INDEX).sum()))
        parts["mlm"] = mlm
        loss += sm.mlm_weight * mlm
    return loss, parts


def category_loss(sm: StepModels, batch: Batch) -> tuple[torch.Tensor, Parts]:
    """One pass gives both the MLM logits (masked inputs) and the pooled embedding."""
    t = batch.tensors
    cfg = sm.config.category
    ids, mask = t["input_ids"], t["attention_mask"]
    hidden = sm.model.hidden(ids, mask)  # [B, T, D]
    pooled = mean_pool(hidden, mask)  # [B, D]
    if cfg.loss == "linear":
        assert sm.head is not None
        category = category_ce_loss(sm.head(pooled), t["category"][:, 0])
    else:
        columns = t["category"].unbind(dim=1)  # one [B] label vector per grouping field
        category = torch.stack([supcon_loss(pooled, c, cfg.temperature) for c in columns]).mean()
    parts = {"category": float(category.detach())}
    loss = cfg.weight * category
    if sm.mlm_weight > 0:
        mlm = _mlm(sm.model, hidden, t["labels"])
        loss = loss + sm.mlm_weight * mlm
        parts["mlm"] = float(mlm.detach())
    return loss + _distill(sm, pooled, ids, mask, parts), parts
