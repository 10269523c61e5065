"""Batch building: whole notes, block shapes, span batches and category batches."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from training.data.notes import Note
from training.data.synthetic import synthetic_notes
from training.objectives.mlm import IGNORE_INDEX
from training.runs.batches import (
    CategoryBatcher,
    DeclutrBatcher,
    MLMBatcher,
    SpecialIds,
    tokenize,
)
from training.runs.config import CategoryConfig, DeclutrConfig, MLMConfig


def test_tokenize_ignores_truncation_in_tokenizer_json(tiny_bert: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    tok.backend_tokenizer.enable_truncation(16)  # all-MiniLM-L6-v2 ships truncation at 128
    ids = tokenize(tok, [Note("a", "patient seen " * 50)])[0]
    assert len(ids) > 16
    assert tok.backend_tokenizer.truncation is not None  # the caller's tokenizer is untouched


def test_batchers_build_consistent_tensors(tiny_bert: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    special = SpecialIds.of(tok)
    notes = synthetic_notes(20, seed=5)
    ids = tokenize(tok, notes)
    g = torch.Generator().manual_seed(0)

    mlm = MLMBatcher(ids, special, MLMConfig(block_size=32))
    batch = mlm.build([0, 1, 2], g)
    assert batch.tensors["input_ids"].shape == (3, 32)
    assert (batch.tensors["labels"] != IGNORE_INDEX).any()

    cfg = DeclutrConfig(num_anchors=2, num_positives=3, min_span=4, max_span=16)
    declutr = DeclutrBatcher(ids, special, cfg, 0.15)
    batch = declutr.build([0, 1, 2, 3], g)
    t = batch.tensors
    assert t["anchor_ids"].shape[0] == 8 and t["positive_ids"].shape[0] == 24
    assert t["note_index"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert t["anchor_attention_mask"].sum(dim=1).max() <= 16 + 2
    assert 0 < declutr.fraction_kept <= 1

    category = CategoryBatcher(
        ids, [[i % 3, -1] for i in range(20)], special, CategoryConfig(max_tokens=24), 0.15
    )
    batch = category.build([3, 4], g)
    assert batch.tensors["input_ids"].shape[1] <= 24
    assert batch.tensors["category"].tolist() == [[0, -1], [1, -1]]  # [B, fields]
