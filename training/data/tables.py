"""Read notes from CSV, TSV, JSONL or Parquet tables with configurable column names."""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.data.notes import ColumnMap, Note, clean_text
from training.errors import CorpusError

log = logging.getLogger(__name__)

TableFormat = Literal["csv", "tsv", "jsonl", "parquet"]
_SUFFIXES: dict[str, TableFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path) -> TableFormat:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in {".gz", ".bz2", ".zst"}]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise CorpusError(
        f"cannot tell the format of {path} from its name: use .csv, .tsv, .jsonl or .parquet "
        "or set corpus.format"
    )


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]


def _read_csv(path: Path, delimiter: str = ",") -> Table:
    # Clinical notes routinely exceed the csv module's 128 KiB default field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = list(reader)
        return Table(list(reader.fieldnames or []), rows)


def _read_tsv(path: Path) -> Table:
    return _read_csv(path, delimiter="\t")


def _read_jsonl(path: Path) -> Table:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise CorpusError(f"{path}: line {number} is not a JSON object")
            columns.update(dict.fromkeys(record))
            rows.append(record)
    return Table(list(columns), rows)


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return Table(list(table.column_names), table.to_pylist())


def read_table(path: Path, fmt: TableFormat | None = None) -> Table:
    """Read a whole table; CSV cells stay strings so ids like 007 keep their zeros."""
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    fmt = fmt or detect_format(path)
    readers = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    try:
        return readers[fmt](path)
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
        # The parser's message can quote a line of the file: keep only the exception type.
        raise CorpusError(f"cannot read {path} as {fmt} ({type(exc).__name__})") from None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_id(value: Any, column: str, row: int, path: Path) -> str | None:
    if _missing(value) or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CorpusError(f"{path}: column {column!r} row {row} holds a {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON/Parquet ids read as floats when a column has gaps
    return str(value)


def table_to_notes(
    table: Table, columns: ColumnMap, path: Path, *, clean: bool = True
) -> tuple[list[Note], int]:
    """Convert table rows to Notes; return (notes, number of empty notes dropped).

    Raises CorpusError naming the column for missing columns and non-text cells.
    """
    wanted = columns.required()
    absent = [f"{field}={col!r}" for field, col in wanted.items() if col not in table.columns]
    if absent:
        have = ", ".join(repr(c) for c in table.columns[:20])
        raise CorpusError(f"{path}: missing column(s) {', '.join(absent)}; the file has {have}")
    notes: list[Note] = []
    empty = 0
    for row, record in enumerate(table.rows):
        raw = record.get(columns.text)
        if _missing(raw):
            empty += 1
            continue
        if not isinstance(raw, str):
            raise CorpusError(
                f"{path}: column {columns.text!r} row {row} holds a {type(raw).__name__}, not text"
            )
        text = clean_text(raw) if clean else raw
        if not text:
            empty += 1
            continue
        note_id = (
            _as_id(record.get(columns.note_id), columns.note_id, row, path)
            if columns.note_id
            else None
        )
        fields = {
            field: _as_id(record.get(col), col, row, path)
            for field, col in wanted.items()
            if field in {"group", "category", "label", "time"}
        }
        notes.append(Note(note_id=note_id or f"row-{row}", text=text, **fields))
    if empty:
        log.info("%s: dropped %d empty note(s)", path, empty)
    return notes, empty


def load_table_notes(
    path: Path, columns: ColumnMap, fmt: TableFormat | None = None
) -> tuple[list[Note], int]:
    """Read a CSV / JSONL / Parquet note table; return (notes, number of empty notes dropped)."""
    return table_to_notes(read_table(path, fmt), columns, path)
