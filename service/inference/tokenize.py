"""Tokenisation and long-note windowing with the bundle's own `tokenizers` tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from service.errors import NoteTooLong
from service.inference.config import LongNotePolicy

Handling = Literal["whole", "chunked", "truncated"]
_PROBE = "notespace"


@dataclass(frozen=True, slots=True)
class TokenizedNote:
    """One note as model-ready windows (special tokens included)."""

    windows: tuple[npt.NDArray[np.int64], ...]
    weights: tuple[int, ...]  # content tokens per window, for the note's weighted mean
    tokens: int  # content tokens in the note (no special tokens)
    handling: Handling

    @property
    def window_tokens(self) -> int:
        return sum(len(w) for w in self.windows)

    @property
    def embedded_tokens(self) -> int:
        """Content tokens the model saw: all of them, unless the note was truncated (each
        token once, though chunk overlaps run twice)."""
        return min(self.tokens, sum(self.weights))


class NoteTokenizer:
    """Splits notes into windows of at most `max_tokens`, overlapping by `overlap_tokens`."""

    def __init__(
        self,
        tokenizer_file: Path,
        *,
        max_tokens: int,
        overlap_tokens: int,
        max_windows_per_note: int,
    ) -> None:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._prefix, self._suffix = _special_tokens(tokenizer)
        self.max_tokens = max_tokens
        self.content_tokens = max_tokens - len(self._prefix) - len(self._suffix)
        if self.content_tokens < 2:
            raise ValueError(f"max_tokens {max_tokens} leaves no room for content")
        self.overlap_tokens = min(overlap_tokens, self.content_tokens // 2)
        self.max_windows_per_note = max_windows_per_note
        self.pad_token_id = _pad_token_id(tokenizer)

    def tokenize(self, texts: list[str], policy: LongNotePolicy) -> list[TokenizedNote]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [
            self._windows(np.asarray(enc.ids, dtype=np.int64), policy, index)
            for index, enc in enumerate(encodings)
        ]

    def _windows(
        self, ids: npt.NDArray[np.int64], policy: LongNotePolicy, index: int
    ) -> TokenizedNote:
        n = len(ids)
        size = self.content_tokens
        if n <= size:
            return TokenizedNote((self._wrap(ids),), (max(n, 1),), n, "whole")
        if policy == "reject":
            raise NoteTooLong(
                f"note has {n} tokens; the model takes {size} per window and long_note is 'reject'",
                param=f"notes[{index}]",
            )
        if policy == "truncate":
            return TokenizedNote((self._wrap(ids[:size]),), (size,), n, "truncated")
        stride = size - self.overlap_tokens
        starts = list(range(0, n - self.overlap_tokens, stride))
        if len(starts) > self.max_windows_per_note:
            raise NoteTooLong(
                f"note has {n} tokens, more than {self.max_windows_per_note} windows",
                param=f"notes[{index}]",
            )
        chunks = [ids[s : s + size] for s in starts]
        return TokenizedNote(
            tuple(self._wrap(c) for c in chunks),
            tuple(len(c) for c in chunks),
            n,
            "chunked",
        )

    def _wrap(self, content: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.concatenate((self._prefix, content, self._suffix))


def _special_tokens(
    tokenizer: Tokenizer,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Find the tokens the post-processor adds before and after content ([CLS]…[SEP], <s>…</s>)."""
    bare = tokenizer.encode(_PROBE, add_special_tokens=False).ids
    full = tokenizer.encode(_PROBE, add_special_tokens=True).ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            prefix, suffix = full[:start], full[start + len(bare) :]
            return np.asarray(prefix, dtype=np.int64), np.asarray(suffix, dtype=np.int64)
    raise ValueError("cannot locate content inside the tokenizer's special-token template")


def _pad_token_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>", "<|pad|>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0  # masked out everywhere, so its value never reaches an output
