"""Long-note windowing: whole, chunked with overlap, truncated, rejected."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from service.errors import NoteTooLong
from service.inference.tokenize import NoteTokenizer
from tests.support.tiny_model import synthetic_corpus


@pytest.fixture(scope="module")
def tokenizer(tiny_bundle: Path) -> NoteTokenizer:
    return NoteTokenizer(
        tiny_bundle / "tokenizer.json", max_tokens=32, overlap_tokens=8, max_windows_per_note=20
    )


def long_text(words: int) -> str:
    return " ".join(synthetic_corpus(40, seed=3))[: words * 8]


def test_short_note_is_one_wrapped_window(tokenizer: NoteTokenizer) -> None:
    (note,) = tokenizer.tokenize(["patient admitted with chest pain"], "chunk")
    assert note.handling == "whole" and len(note.windows) == 1
    window = note.windows[0]
    cls_id, sep_id = 2, 3  # [CLS], [SEP] in the tiny vocabulary
    assert window[0] == cls_id and window[-1] == sep_id
    assert note.tokens == len(window) - 2


def test_long_note_chunks_into_overlapping_windows(tokenizer: NoteTokenizer) -> None:
    (note,) = tokenizer.tokenize([long_text(200)], "chunk")
    assert note.handling == "chunked" and len(note.windows) > 2
    content = [w[1:-1] for w in note.windows]
    assert all(len(w) <= 32 for w in note.windows)
    for left, right in itertools.pairwise(content):
        np.testing.assert_array_equal(left[-8:], right[:8])  # 8-token overlap
    stride = 30 - 8
    assert sum(note.weights) == note.tokens + 8 * (len(note.windows) - 1)
    assert len(note.windows) == len(range(0, note.tokens - 8, stride))


def test_truncate_keeps_first_window(tokenizer: NoteTokenizer) -> None:
    (note,) = tokenizer.tokenize([long_text(200)], "truncate")
    assert note.handling == "truncated" and len(note.windows) == 1
    assert len(note.windows[0]) == 32 and note.tokens > 30


def test_reject_names_the_note(tokenizer: NoteTokenizer) -> None:
    with pytest.raises(NoteTooLong) as err:
        tokenizer.tokenize(["short note", long_text(200)], "reject")
    assert err.value.param == "notes[1]" and err.value.status == 413


def test_too_many_windows(tiny_bundle: Path) -> None:
    tok = NoteTokenizer(
        tiny_bundle / "tokenizer.json", max_tokens=32, overlap_tokens=8, max_windows_per_note=2
    )
    with pytest.raises(NoteTooLong, match="more than 2 windows"):
        tok.tokenize([long_text(400)], "chunk")
