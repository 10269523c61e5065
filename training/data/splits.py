"""Group splits: no patient, admission or distinct text appears on two sides of a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.data.notes import Note, text_key
from training.errors import CorpusError


@dataclass(frozen=True)
class CorpusSplit:
    """train: pre-training notes; eval: held-out loss; test: reserved for downstream evaluation."""

    train: list[Note]
    eval: list[Note]
    test: list[Note]


def split_group(note: Note, by: str) -> str:
    if by == "text" or note.group is None:
        return f"text:{text_key(note.text)}"
    return note.group


def split_by_group(
    notes: Sequence[Note],
    *,
    eval_fraction: float,
    test_fraction: float,
    seed: int,
    by: str = "group",
) -> CorpusSplit:
    """Assign whole groups to test, eval and train, in that order, by a seeded permutation.

    Fractions are of groups, not notes; with by="group" notes lacking a group fall back to
    their distinct text, so exact duplicates still land on one side.
    """
    if not 0 <= eval_fraction < 1 or not 0 <= test_fraction < 1:
        raise CorpusError("split fractions must be in [0, 1)")
    if eval_fraction + test_fraction >= 1:
        raise CorpusError("eval_fraction + test_fraction must leave some notes to train on")
    groups = sorted({split_group(n, by) for n in notes})
    order = np.random.default_rng(seed).permutation(len(groups))
    n_test = round(len(groups) * test_fraction)
    n_eval = max(1, round(len(groups) * eval_fraction)) if eval_fraction > 0 else 0
    if n_test + n_eval >= len(groups):
        raise CorpusError(
            f"corpus has {len(groups)} split group(s): too few for eval and test splits"
        )
    side: dict[str, int] = {}
    for rank, index in enumerate(order):
        side[groups[index]] = 0 if rank < n_test else 1 if rank < n_test + n_eval else 2
    parts: tuple[list[Note], list[Note], list[Note]] = ([], [], [])
    for note in notes:
        parts[side[split_group(note, by)]].append(note)
    return CorpusSplit(test=parts[0], eval=parts[1], train=parts[2])


def exclude(notes: Sequence[Note], excluded_ids: set[str], by: str = "group") -> list[Note]:
    """Drop excluded notes and every note sharing a group with one (no patient leaks back)."""
    banned = {split_group(n, by) for n in notes if n.note_id in excluded_ids}
    return [n for n in notes if n.note_id not in excluded_ids and split_group(n, by) not in banned]
