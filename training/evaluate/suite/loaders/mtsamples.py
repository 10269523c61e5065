"""MTSamples tasks: note type (`Note.category`) and clinical specialty (`Note.label`).

Both share one split of the distinct texts: test = sha256(text_key) % 5 == 0 (20 %), then a
seeded 15 % group split of the rest for validation; the rest is the few-shot pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from training.data.mtsamples import NO_NOTE_TYPE, load_mtsamples
from training.data.notes import Note, text_key
from training.data.splits import split_by_group
from training.errors import CorpusError
from training.evaluate.data import EvaluationError
from training.evaluate.suite.hashsplit import is_fifth
from training.evaluate.suite.tasks import ClassificationTask, Example, fix_classes

VAL_FRACTION = 0.15
VAL_SEED = 13


def is_test_text(text: str) -> bool:
    return is_fifth(text_key(text))


def split_notes(path: Path) -> tuple[list[Note], list[Note], list[Note]]:
    """(train pool, validation, test) distinct notes, the same for every MTSamples task."""
    try:
        notes, _ = load_mtsamples(path)
    except CorpusError as exc:
        raise EvaluationError(str(exc)) from None
    test = [n for n in notes if is_test_text(n.text)]
    rest = [n for n in notes if not is_test_text(n.text)]
    parts = split_by_group(
        rest, eval_fraction=VAL_FRACTION, test_fraction=0.0, seed=VAL_SEED, by="text"
    )
    return parts.train, parts.eval, test


def held_out_note_ids(path: Path) -> list[str]:
    """The held-out note ids (the loader's id of each distinct test text), in file order: what
    `training/configs/mtsamples-test-ids.txt` holds for `corpus.exclude_ids_file`."""
    return [n.note_id for n in split_notes(path)[2]]


def load_mtsamples_task(
    name: str, path: Path, *, target: Literal["category", "label"], min_per_class: int
) -> ClassificationTask:
    train, val, test = split_notes(path)

    def examples(notes: list[Note]) -> list[Example]:
        out = []
        for n in notes:
            y = n.category if target == "category" else n.label
            if y and not (target == "category" and y == NO_NOTE_TYPE):
                out.append(Example(n.note_id, n.text, y, n.group))
        return out

    what = (
        "note type (document-type heading, README priority order; 'other' = no heading, left out)"
        if target == "category"
        else "clinical specialty (first non-document-type heading of the distinct text)"
    )
    protocol = (
        f"MTSamples, {what}. Distinct texts; test = sha256(text_key) % 5 == 0; validation = "
        f"seeded ({VAL_SEED}) {VAL_FRACTION:.0%} group split of the rest; few-shot pool = the rest."
    )
    return fix_classes(
        name,
        examples(train),
        examples(val),
        examples(test),
        min_per_class=min_per_class,
        protocol=protocol,
    )
