"""A trust's own task from its table (CSV / JSONL / Parquet) with columns mapped, not renamed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from training.data.notes import clean_text, text_key
from training.data.tables import Table, read_table
from training.errors import CorpusError
from training.evaluate.data import EvaluationError
from training.evaluate.suite.config import (
    ClassificationColumns,
    ColumnSplit,
    CustomTaskSpec,
    HashSplit,
    RetrievalColumns,
)
from training.evaluate.suite.hashsplit import hash_split_side, normalise
from training.evaluate.suite.tasks import (
    ClassificationTask,
    Example,
    Query,
    RetrievalTask,
    Task,
    fix_classes,
)

SIDES = ("train", "val", "test")


def _read(spec: CustomTaskSpec, path: Path) -> Table:
    try:
        return read_table(path, spec.format)
    except CorpusError as exc:
        raise EvaluationError(f"task {spec.name}: {exc}") from None


def _check_columns(spec: CustomTaskSpec, path: Path, table: Table) -> None:
    mapped = dict(spec.columns.model_dump(exclude_none=True))
    if isinstance(spec.split, ColumnSplit):
        mapped["split"] = spec.split.column
    missing = [f"{field}: {col!r}" for field, col in mapped.items() if col not in table.columns]
    if missing:
        have = ", ".join(repr(c) for c in table.columns[:30])
        raise EvaluationError(
            f"task {spec.name}: {path.name} has no column {', '.join(missing)}; the file has {have}"
        )


def _cell(record: dict[str, Any], column: str | None) -> str:
    if column is None:
        return ""
    value = record.get(column)
    if value is None or (isinstance(value, float) and value != value):  # None / NaN
        return ""
    return str(value).strip()


def _side(spec: CustomTaskSpec, record: dict[str, Any], row: int, key: str) -> str:
    if isinstance(spec.split, HashSplit):
        return hash_split_side(
            key, test_fraction=spec.split.test_fraction, val_fraction=spec.split.val_fraction
        )
    value = _cell(record, spec.split.column).lower()
    if value not in SIDES:
        # The value is a split name the trust wrote, not note text: safe to show (shortened).
        raise EvaluationError(
            f"task {spec.name}: row {row} has {spec.split.column}={value[:20]!r}; "
            "expected train, val or test"
        )
    return value


def load_custom_task(spec: CustomTaskSpec, path: Path, *, min_per_class: int) -> Task:
    table = _read(spec, path)
    _check_columns(spec, path, table)
    if isinstance(spec.columns, ClassificationColumns):
        return _classification(spec, spec.columns, path, table, min_per_class)
    assert isinstance(spec.columns, RetrievalColumns)  # CustomTaskSpec checks kind vs columns
    return _retrieval(spec, spec.columns, table)


def _split_note(spec: CustomTaskSpec) -> str:
    if isinstance(spec.split, HashSplit):
        return (
            f"hash split by {'group' if getattr(spec.columns, 'group', None) else 'text'} "
            f"(test {spec.split.test_fraction:.0%}, validation {spec.split.val_fraction:.0%})"
        )
    return f"split column {spec.split.column!r}"


def _classification(
    spec: CustomTaskSpec,
    cols: ClassificationColumns,
    path: Path,
    table: Table,
    min_per_class: int,
) -> ClassificationTask:
    parts: dict[str, list[Example]] = {side: [] for side in SIDES}
    side_of_group: dict[str, tuple[str, int]] = {}
    skipped = 0
    for row, record in enumerate(table.rows):
        text, label = clean_text(_cell(record, cols.text)), _cell(record, cols.label)
        if not text or not label:
            skipped += 1
            continue
        group = _cell(record, cols.group) or f"text:{text_key(text)}"
        side = _side(spec, record, row, group)
        first = side_of_group.setdefault(group, (side, row))
        if first[0] != side:
            raise EvaluationError(
                f"task {spec.name}: rows {first[1]} and {row} share a group but the split puts "
                f"them in {first[0]} and {side}"
            )
        parts[side].append(Example(_cell(record, cols.id) or f"row-{row}", text, label, group))
    protocol = (
        f"{path.name}: text {cols.text!r}, label {cols.label!r}; {_split_note(spec)}; "
        f"{skipped} row(s) without text or label skipped."
    )
    return fix_classes(
        spec.name,
        parts["train"],
        parts["val"],
        parts["test"],
        min_per_class=min_per_class,
        protocol=protocol,
    )


def _retrieval(spec: CustomTaskSpec, cols: RetrievalColumns, table: Table) -> RetrievalTask:
    doc_index: dict[str, str] = {}  # document id -> text
    doc_of_text: dict[str, str] = {}
    relevant: dict[str, set[str]] = defaultdict(set)
    query_text: dict[str, str] = {}
    query_side: dict[str, tuple[str, int]] = {}
    for row, record in enumerate(table.rows):
        query, document = (
            clean_text(_cell(record, cols.query)),
            clean_text(_cell(record, cols.document)),
        )
        if not document:
            continue
        doc_id = _cell(record, cols.id) or doc_of_text.setdefault(
            text_key(document), f"doc:{text_key(document)}"
        )
        if doc_index.setdefault(doc_id, document) != document:
            raise EvaluationError(f"task {spec.name}: document id in row {row} names two texts")
        if not query:
            continue  # a document with no query still belongs to the corpus
        key = normalise(query)
        side = _side(spec, record, row, key)
        first = query_side.setdefault(key, (side, row))
        if first[0] != side:
            raise EvaluationError(
                f"task {spec.name}: rows {first[1]} and {row} hold the same query but the split "
                f"puts them in {first[0]} and {side}"
            )
        query_text.setdefault(key, query)
        relevant[key].add(doc_id)
    queries = {
        key: Query(f"q:{text_key(key)}", query_text[key], frozenset(docs))
        for key, docs in relevant.items()
    }
    val = [q for key, q in queries.items() if query_side[key][0] == "val"]
    test = [q for key, q in queries.items() if query_side[key][0] == "test"]
    if not val or not test:
        raise EvaluationError(
            f"task {spec.name}: needs validation and test queries (has {len(val)} and {len(test)})"
        )
    return RetrievalTask(
        name=spec.name,
        doc_ids=list(doc_index),
        doc_texts=list(doc_index.values()),
        val=val,
        test=test,
        protocol=(
            f"queries {cols.query!r} → documents {cols.document!r}; relevant = the documents "
            f"paired with a query (normalised); {_split_note(spec)}; train-side queries unused."
        ),
    )
