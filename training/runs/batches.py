"""Turn tokenised notes into model-ready batches for each objective, deterministically per step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from training.data.notes import Note
from training.data.spans import sample_spans, span_bounds
from training.errors import CorpusError, TrainingConfigError
from training.objectives.mlm import mask_tokens
from training.runs.config import CategoryConfig, DeclutrConfig, MLMConfig


@dataclass(frozen=True)
class SpecialIds:
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    vocab_size: int

    @classmethod
    def of(cls, tokenizer: Any) -> SpecialIds:
        return cls(
            cls_id=int(tokenizer.cls_token_id),
            sep_id=int(tokenizer.sep_token_id),
            pad_id=int(tokenizer.pad_token_id),
            mask_id=int(tokenizer.mask_token_id),
            vocab_size=len(tokenizer),
        )


@dataclass
class Batch:
    """Tensors for one micro-batch plus what it counts for throughput."""

    tensors: dict[str, torch.Tensor]
    notes: float  # notes (declutr, category) or note-equivalents of tokens (mlm)
    tokens: int  # non-padding tokens fed to the encoder
    extra: dict[str, int] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        moved = {k: v.to(device, non_blocking=True) for k, v in self.tensors.items()}
        return Batch(moved, self.notes, self.tokens, self.extra)


class Batcher(Protocol):
    """Builds batch `index` of items chosen by the caller, with a per-step generator."""

    @property
    def num_items(self) -> int: ...

    def build(self, items: Sequence[int], generator: torch.Generator) -> Batch: ...


def tokenize(tokenizer: Any, notes: Sequence[Note]) -> list[list[int]]:
    """Token ids of each note without special tokens or truncation (long notes kept whole)."""
    from tokenizers import Tokenizer

    # A copy: tokenizer.json may enable truncation (all-MiniLM-L6-v2 cuts at 128 tokens),
    # which would silently reduce every note to its first window.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    encodings = backend.encode_batch([n.text for n in notes], add_special_tokens=False)
    return [list(e.ids) for e in encodings]


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists -> (input_ids [B, T], attention_mask [B, T])."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def _masked(
    ids: torch.Tensor, special: SpecialIds, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    special_mask = (ids == special.cls_id) | (ids == special.sep_id) | (ids == special.pad_id)
    return mask_tokens(
        ids,
        special_mask,
        mask_token_id=special.mask_id,
        vocab_size=special.vocab_size,
        generator=generator,
        probability=probability,
    )


class MLMBatcher:
    """Concatenated notes cut into fixed blocks of [CLS] ... [SEP]; items are blocks."""

    def __init__(self, token_ids: Sequence[Sequence[int]], special: SpecialIds, cfg: MLMConfig):
        stream: list[int] = []
        for ids in token_ids:
            stream.extend(ids)
            stream.append(special.sep_id)  # a boundary the model has seen in pre-training
        body = cfg.block_size - 2
        self.blocks = [
            [special.cls_id, *stream[i : i + body], special.sep_id]
            for i in range(0, len(stream), body)
        ]
        if self.blocks and len(self.blocks[-1]) < cfg.block_size // 4:
            self.blocks.pop()  # a tiny tail block is mostly specials: drop it
        self.special = special
        self.cfg = cfg
        self.tokens_per_note = max(1.0, len(stream) / max(1, len(token_ids)))

    @property
    def num_items(self) -> int:
        return len(self.blocks)

    def build(self, items: Sequence[int], generator: torch.Generator) -> Batch:
        ids, attention = pad([self.blocks[i] for i in items], self.special.pad_id)
        masked, labels = _masked(ids, self.special, self.cfg.mask_probability, generator)
        tokens = int(attention.sum())
        return Batch(
            {"input_ids": masked, "attention_mask": attention, "labels": labels},
            notes=tokens / self.tokens_per_note,
            tokens=tokens,
        )


class DeclutrBatcher:
    """Notes -> A anchors and A x P positives each, spans re-sampled every time a note is used.

    Anchors are masked for the MLM term when mask_probability > 0 (0: no MLM term).
    """

    def __init__(
        self,
        token_ids: Sequence[Sequence[int]],
        special: SpecialIds,
        cfg: DeclutrConfig,
        mask_probability: float,
    ):
        self.special = special
        self.cfg = cfg
        self.mask_probability = mask_probability
        self.total_notes = len(token_ids)
        self.notes = [
            list(ids)
            for ids in token_ids
            if span_bounds(len(ids), cfg.num_anchors, cfg.min_span, cfg.max_span) is not None
        ]

    @property
    def num_items(self) -> int:
        return len(self.notes)

    @property
    def fraction_kept(self) -> float:
        return len(self.notes) / max(1, self.total_notes)

    def build(self, items: Sequence[int], generator: torch.Generator) -> Batch:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        anchors: list[list[int]] = []
        positives: list[list[int]] = []
        note_index: list[int] = []
        for position, item in enumerate(items):
            ids = self.notes[item]
            spans = sample_spans(
                len(ids),
                num_anchors=self.cfg.num_anchors,
                num_positives=self.cfg.num_positives,
                min_span=self.cfg.min_span,
                max_span=self.cfg.max_span,
                rng=rng,
                positive_mode=self.cfg.positive_mode,
                positive_max_span=self.cfg.positive_max_span,
            )
            assert spans is not None  # short notes were filtered in __init__
            for anchor in spans:
                anchors.append([self.special.cls_id, *ids[anchor.anchor.start : anchor.anchor.end]])
                anchors[-1].append(self.special.sep_id)
                note_index.append(position)
                for pos in anchor.positives:
                    positives.append(
                        [self.special.cls_id, *ids[pos.start : pos.end], self.special.sep_id]
                    )
        anchor_ids, anchor_mask = pad(anchors, self.special.pad_id)
        positive_ids, positive_mask = pad(positives, self.special.pad_id)
        tensors = {
            "anchor_attention_mask": anchor_mask,
            "positive_ids": positive_ids,
            "positive_attention_mask": positive_mask,
            "note_index": torch.tensor(note_index, dtype=torch.long),
        }
        if self.mask_probability > 0:
            masked, labels = _masked(anchor_ids, self.special, self.mask_probability, generator)
            tensors.update(anchor_ids=masked, labels=labels)
        else:
            tensors["anchor_ids"] = anchor_ids
        return Batch(tensors, notes=len(items), tokens=int(anchor_mask.sum() + positive_mask.sum()))


class CategoryBatcher:
    """Notes truncated to max_tokens with one class index per grouping field (-1: none); masked
    for the MLM term when mask_probability > 0 (0: the encoder sees the notes as they are)."""

    def __init__(
        self,
        token_ids: Sequence[Sequence[int]],
        categories: Sequence[Sequence[int]],
        special: SpecialIds,
        cfg: CategoryConfig,
        mask_probability: float,
    ):
        body = cfg.max_tokens - 2
        self.sequences = [[special.cls_id, *ids[:body], special.sep_id] for ids in token_ids]
        self.categories = [list(c) for c in categories]
        self.special = special
        self.mask_probability = mask_probability

    @property
    def num_items(self) -> int:
        return len(self.sequences)

    def build(self, items: Sequence[int], generator: torch.Generator) -> Batch:
        ids, attention = pad([self.sequences[i] for i in items], self.special.pad_id)
        tensors = {
            "input_ids": ids,
            "attention_mask": attention,
            # [B, F]: one column per grouping field
            "category": torch.tensor([self.categories[i] for i in items], dtype=torch.long),
        }
        if self.mask_probability > 0:
            masked, labels = _masked(ids, self.special, self.mask_probability, generator)
            tensors.update(input_ids=masked, labels=labels)
        return Batch(tensors, notes=len(items), tokens=int(attention.sum()))


def category_vocabulary(groups: Sequence[str | None], field: str = "category") -> list[str]:
    """Sorted distinct values of the training notes' grouping field (category.fields); errors
    if there is nothing to learn."""
    present = [g for g in groups if g]
    if not present:
        raise TrainingConfigError(
            f"the category objective needs a {field} column: set corpus.columns.{field} "
            "(MIMIC: CATEGORY; MTSamples: derived note type as category, specialty as label)"
        )
    names = sorted(set(present))
    if len(names) < 2:
        raise CorpusError(
            f"the {field} column has a single value ({names[0]!r}) in the training split: "
            "nothing to separate"
        )
    return names


def check_size(batcher: Batcher, batch_size: int, part: str) -> None:
    if batcher.num_items < batch_size:
        raise CorpusError(
            f"the {part} split yields {batcher.num_items} usable item(s), fewer than "
            f"batch_size {batch_size}: use a larger corpus or a smaller batch"
        )
