"""Data files of a task: resolved against the data root, missing ones named in one line."""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Iterable
from pathlib import Path

from training.data.tables import Table, read_table
from training.evaluate.data import EvaluationError


def data_file(task: str, data_root: Path | None, relative: str | Path) -> Path:
    """`relative` under `data_root` (absolute paths are kept); a missing file is an error
    naming the task and the path, never a traceback."""
    path = Path(relative)
    if not path.is_absolute() and data_root is not None:
        path = data_root / path
    if not path.exists():
        hint = f" (data root {data_root})" if data_root is not None else ""
        raise EvaluationError(f"task {task}: data file not found: {path}{hint}")
    return path


def read_csv_table(path: Path) -> Table:
    """A CSV file, plain or gzip-compressed, as strings (the READMEs' own way of reading)."""
    if path.suffix.lower() != ".gz":
        return read_table(path, "csv")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with gzip.open(path, "rb") as raw:
            reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            rows = list(reader)
            return Table(list(reader.fieldnames or []), rows)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        # The parser's message can quote a line of the file: keep only the exception type.
        raise EvaluationError(f"cannot read {path} as gzip CSV ({type(exc).__name__})") from None


def require_columns(task: str, path: Path, table: Table, needed: Iterable[str]) -> None:
    if missing := [c for c in needed if c not in table.columns]:
        have = ", ".join(repr(c) for c in table.columns[:20])
        raise EvaluationError(
            f"task {task}: {path.name} lacks column(s) {', '.join(map(repr, missing))}; "
            f"the file has {have}"
        )
