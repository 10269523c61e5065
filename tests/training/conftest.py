"""Shared fixtures: a tiny random BERT + WordPiece tokenizer trained on synthetic notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_encoder
from training.data.synthetic import synthetic_notes


def build_tiny_bert(out: Path) -> Path:
    """A 2-layer, 32-wide BertForMaskedLM with a WordPiece vocabulary of synthetic notes."""
    return build_tiny_encoder(
        out,
        corpus=[n.text for n in synthetic_notes(200, seed=1)],
        vocab_size=400,
        masked_lm=True,
        model_max_length=128,
    )


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
