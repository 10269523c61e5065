"""MTSamples tasks: note type (`Note.category`), clinical specialty (`Note.label`), and
description → note retrieval (a clinician's short phrase looking for its note).

Every task shares one split of the distinct texts, a pure function of each text: test =
sha256(text_key) % 5 == 0 (20 %), validation = a salted hash below 15 % of all texts among the
rest, the few-shot pool = the rest. A training corpus that excludes the ids of both
(`training/configs/mtsamples-eval-ids.txt`) never sees a note the suite scores or validates on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from training.data.mtsamples import NO_NOTE_TYPE, load_mtsamples, mtsamples_text
from training.data.notes import Note, text_key
from training.errors import CorpusError
from training.evaluate.data import EvaluationError
from training.evaluate.suite.hashsplit import hash_unit, is_fifth, normalise
from training.evaluate.suite.loaders.files import read_csv_table, require_columns
from training.evaluate.suite.tasks import (
    ClassificationTask,
    Example,
    Query,
    RetrievalTask,
    fix_classes,
)

VAL_FRACTION = 0.15  # of all distinct texts
TEST_FRACTION = 0.2  # is_fifth
Side = Literal["train", "val", "test"]


def text_side(text: str) -> Side:
    """Which side of the suite's MTSamples split a (cleaned) transcription falls on."""
    key = text_key(text)
    if is_fifth(key):
        return "test"
    if hash_unit(key, "val") < VAL_FRACTION / (1 - TEST_FRACTION):
        return "val"
    return "train"


def _notes(path: Path) -> list[Note]:
    try:
        notes, _ = load_mtsamples(path)
    except CorpusError as exc:
        raise EvaluationError(str(exc)) from None
    return notes


def split_notes(path: Path) -> tuple[list[Note], list[Note], list[Note]]:
    """(train pool, validation, test) distinct notes, the same for every MTSamples task."""
    sides: dict[Side, list[Note]] = {"train": [], "val": [], "test": []}
    for note in _notes(path):
        sides[text_side(note.text)].append(note)
    return sides["train"], sides["val"], sides["test"]


def held_out_note_ids(path: Path) -> list[str]:
    """The test note ids (the loader's id of each distinct test text), in file order: what
    `training/configs/mtsamples-test-ids.txt` holds."""
    return [n.note_id for n in split_notes(path)[2]]


def evaluation_note_ids(path: Path) -> list[str]:
    """Test then validation note ids: what `training/configs/mtsamples-eval-ids.txt` holds
    for `corpus.exclude_ids_file` / `adapt --exclude-ids` (train on neither)."""
    _, val, test = split_notes(path)
    return [n.note_id for n in test + val]


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
        f"salted hash, {VAL_FRACTION:.0%} of all texts; few-shot pool = the rest."
    )
    return fix_classes(
        name,
        examples(train),
        examples(val),
        examples(test),
        min_per_class=min_per_class,
        protocol=protocol,
    )


def load_description_task(name: str, path: Path) -> RetrievalTask:
    """Description → note: each distinct (normalised) `description` is a query whose relevant
    documents are the distinct notes carrying it; the corpus is every distinct note. A query
    is on the test side when one of its notes is, else validation when one is; descriptions
    of pool notes only are not queries (a training run may see the notes, never the queries)."""
    table = read_csv_table(path)
    require_columns(name, path, table, ("transcription", "description"))
    notes = _notes(path)
    note_id = {text_key(n.text): n.note_id for n in notes}
    side_of = {n.note_id: text_side(n.text) for n in notes}
    relevant: dict[str, set[str]] = {}
    for record in table.rows:
        text, description = mtsamples_text(record["transcription"]), record["description"]
        query = normalise(str(description or ""))
        if text and query:
            relevant.setdefault(query, set()).add(note_id[text_key(text)])
    parts: dict[Side, list[Query]] = {"train": [], "val": [], "test": []}
    for number, (query, ids) in enumerate(relevant.items()):
        sides = {side_of[i] for i in ids}
        side: Side = "test" if "test" in sides else "val" if "val" in sides else "train"
        parts[side].append(Query(f"d{number}", query, frozenset(ids)))
    return RetrievalTask(
        name=name,
        doc_ids=[n.note_id for n in notes],
        doc_texts=[n.text for n in notes],
        val=parts["val"],
        test=parts["test"],
        protocol=(
            "MTSamples description → note: queries = distinct normalised descriptions, "
            "relevant = the distinct notes carrying one, corpus = every distinct note (long "
            "notes chunked as served). A query is test when one of its notes is test, else "
            "validation when one is validation; pool-only descriptions are not scored."
        ),
    )
