"""The labelled evaluation set: notes, a task, a held-out test split, and few-shot sampling."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from training.data.corpus import CorpusConfig, CorpusFormat, read_notes
from training.data.notes import ColumnMap, Note, deduplicate
from training.data.splits import split_by_group, split_group
from training.errors import TrainingError

Task = Literal["label", "category"]
FewShotN = int | Literal["all"]


class EvaluationError(TrainingError):
    """The evaluation cannot run as asked (too few examples, one class, unknown model, ...)."""


class HasClass(Protocol):
    """Anything few-shot sampling can draw from: an example with a class."""

    @property
    def y(self) -> str: ...


@dataclass(frozen=True)
class LabelledNote:
    note_id: str
    text: str
    y: str  # the task's class
    category: str | None  # note category, for embedding-space analysis by category
    label: str | None


@dataclass(frozen=True)
class EvalSet:
    """Train pool (few-shot samples come from here), validation and held-out test notes."""

    task: Task
    classes: list[str]
    train: list[LabelledNote]
    val: list[LabelledNote]
    test: list[LabelledNote]
    dropped_classes: dict[str, int] = field(default_factory=dict)  # class -> train examples
    # Every held-out note with its category/label, task class or not: the embedding-space
    # analysis by note category uses all of them.
    analysis: list[LabelledNote] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            part: dict(sorted(Counter(n.y for n in notes).items()))
            for part, notes in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def _meta(note: Note) -> tuple[str | None, str | None]:
    return note.category, note.label


def _labelled(note: Note, task: Task) -> LabelledNote | None:
    y = note.label if task == "label" else note.category
    if y is None or y == "":
        return None
    return LabelledNote(note.note_id, note.text, y, note.category, note.label)


def load_notes(path: Path, fmt: CorpusFormat, columns: ColumnMap | None = None) -> list[Note]:
    """Read and de-duplicate a labelled corpus with the training-side readers. A table's
    columns are named by `columns` (default: `text`, `note_id`, `category` and `label`); a
    missing one is a CorpusError naming it and the columns the file has."""
    if columns is None:
        columns = ColumnMap(category="category", label="label")
    notes, _ = read_notes(CorpusConfig(format=fmt, path=path, columns=columns))
    notes, _ = deduplicate(notes)
    return notes


def build_eval_set(
    notes: Sequence[Note],
    *,
    task: Task,
    test_ids: set[str] | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.15,
    min_per_class: int = 0,
    classes: Sequence[str] | None = None,
    max_test: int | None = None,
    seed: int = 13,
) -> EvalSet:
    """Split by group (patient / distinct text): test is `test_ids` when given (the notes the
    pre-training runs held out), else a seeded group split; validation comes from the rest.

    Classes with fewer than `min_per_class` training examples are dropped (and reported);
    `classes` restricts the task to a named subset.
    """
    if test_ids is not None:
        banned = {split_group(n, "group") for n in notes if n.note_id in test_ids}
        test_notes = [n for n in notes if n.note_id in test_ids]
        rest = [n for n in notes if split_group(n, "group") not in banned]
        if not test_notes:
            raise EvaluationError("none of the test note ids occur in the data")
        parts = split_by_group(rest, eval_fraction=val_fraction, test_fraction=0.0, seed=seed)
        train_notes, val_notes = parts.train, parts.eval
    else:
        parts = split_by_group(
            notes, eval_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
        train_notes, val_notes, test_notes = parts.train, parts.eval, parts.test

    def labelled(part: Sequence[Note]) -> list[LabelledNote]:
        return [x for n in part if (x := _labelled(n, task)) is not None]

    train, val, test = labelled(train_notes), labelled(val_notes), labelled(test_notes)
    counts = Counter(n.y for n in train)
    if classes is not None:
        if unknown := sorted(set(classes) - set(counts)):
            raise EvaluationError(f"class(es) {unknown} have no training examples for {task}")
        kept = sorted(classes)
    else:
        kept = sorted(c for c, k in counts.items() if k >= min_per_class)
    dropped = {c: k for c, k in sorted(counts.items()) if c not in kept}
    if len(kept) < 2:
        raise EvaluationError(
            f"task {task!r} has {len(kept)} class(es) with at least {min_per_class} training "
            "examples; classification needs two or more"
        )
    keep = set(kept)
    train = [n for n in train if n.y in keep]
    val = [n for n in val if n.y in keep]
    test = [n for n in test if n.y in keep]
    if max_test is not None and len(test) > max_test:
        order = np.random.default_rng(seed).permutation(len(test))[:max_test]
        test = [test[i] for i in sorted(order)]
    for part, name in ((val, "validation"), (test, "test")):
        if missing := sorted(keep - {n.y for n in part}):
            raise EvaluationError(f"the {name} split has no examples of class(es) {missing}")
    analysis = [LabelledNote(n.note_id, n.text, "", *_meta(n)) for n in test_notes]
    # y holds the task class only where it is one of the kept classes.
    analysis = [
        replace(n, y=y) if (y := (n.label if task == "label" else n.category) or "") in keep else n
        for n in analysis
    ]
    if max_test is not None and len(analysis) > max_test:
        order = np.random.default_rng(seed + 1).permutation(len(analysis))[:max_test]
        analysis = [analysis[i] for i in sorted(order)]
    return EvalSet(task, kept, train, val, test, dropped, analysis)


def parse_n(value: str) -> FewShotN:
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise EvaluationError(f"N must be a positive integer or 'all', not {value!r}") from None
    if n < 1:
        raise EvaluationError(f"N must be a positive integer or 'all', not {value!r}")
    return n


def sample_few_shot(
    notes: Sequence[HasClass], classes: Sequence[str], n: FewShotN, seed: int
) -> list[int]:
    """Indices of `n` examples per class drawn with `seed` ("all": every example).

    Raises when a class has fewer than `n` examples, naming the class and its count.
    """
    by_class: dict[str, list[int]] = {c: [] for c in classes}
    for i, note in enumerate(notes):
        if note.y in by_class:
            by_class[note.y].append(i)
    if len(classes) < 2:
        raise EvaluationError("few-shot classification needs at least two classes")
    if n == "all":
        return sorted(i for idx in by_class.values() for i in idx)
    short = {c: len(idx) for c, idx in by_class.items() if len(idx) < n}
    if short:
        listed = ", ".join(f"{c!r} has {k}" for c, k in sorted(short.items()))
        raise EvaluationError(
            f"N={n} examples per class asked, but {listed} (raise --min-per-class to drop "
            "small classes, or lower N)"
        )
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for c in classes:
        idx = by_class[c]
        chosen.extend(idx[j] for j in rng.choice(len(idx), size=n, replace=False))
    return sorted(chosen)
