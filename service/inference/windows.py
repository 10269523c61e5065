"""Running notes' token windows through an encoder, and pooling them back into note vectors.

Pure functions shared by the batcher, the query lane and offline embedding, so every path
windows, pads and pools the same way (the same note gives the same vector on each).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from service.inference.tokenize import TokenizedNote
from service.inference.window_encoder import WindowEncoder

Vectors = npt.NDArray[np.float32]


def encode_windows(
    encoder: WindowEncoder,
    groups: list[list[TokenizedNote]],
    *,
    pad_token_id: int,
    max_batch_tokens: int,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> list[Vectors]:
    """Run every window of every group of notes, in batches of at most `max_batch_tokens`
    padded tokens, longest first; returns window vectors per group, in window order."""
    rows: list[tuple[int, int, npt.NDArray[np.int64]]] = [
        (g, w, ids)
        for g, notes in enumerate(groups)
        for w, ids in enumerate(win for note in notes for win in note.windows)
    ]
    rows.sort(key=lambda row: len(row[2]), reverse=True)
    outputs: list[Vectors | None] = [None] * len(groups)
    start = 0
    while start < len(rows):
        longest = len(rows[start][2])
        count = max(1, min(len(rows) - start, max_batch_tokens // longest))
        batch = rows[start : start + count]
        ids = np.full((count, longest), pad_token_id, dtype=np.int64)
        mask = np.zeros((count, longest), dtype=np.int64)
        for i, (_, _, window) in enumerate(batch):
            ids[i, : len(window)] = window
            mask[i, : len(window)] = 1
        started = time.perf_counter()
        vectors = encoder.encode(ids, mask)
        if on_batch is not None:
            on_batch(count, longest, time.perf_counter() - started)
        for i, (g, w, _) in enumerate(batch):
            out = outputs[g]
            if out is None:
                total = sum(len(n.windows) for n in groups[g])
                out = outputs[g] = np.empty((total, vectors.shape[1]), dtype=np.float32)
            out[w] = vectors[i]
        start += count
    return [out for out in outputs if out is not None]


def pool_notes(notes: list[TokenizedNote], window_vectors: Vectors) -> Vectors:
    """Token-weighted mean of each note's window vectors, re-normalised to unit length."""
    out = np.empty((len(notes), window_vectors.shape[1]), dtype=np.float32)
    row = 0
    for i, note in enumerate(notes):
        count = len(note.windows)
        if count == 1:
            out[i] = window_vectors[row]
        else:
            weights = np.asarray(note.weights, dtype=np.float32)[:, None]
            summed = (window_vectors[row : row + count] * weights).sum(axis=0)
            out[i] = summed / max(float(np.linalg.norm(summed)), 1e-12)
        row += count
    return out
