"""`notespace index backfill FILE`: a trust's archive of notes (CSV or Parquet) into the notes
table, embedded by a model version as it goes.

Each batch of rows is checked, embedded (only the notes not already embedded with this text
under this version) and written with the note upsert the API uses, in one commit; so a run can
stop anywhere and the same command goes on where it stopped, re-reading the file but embedding
nothing twice. A row that breaks a rule stops the run with its row number and column, never
its content; rows before it are stored.

Once the archive is in the notes table, `index rebuild --model REF --ray ADDRESS` re-embeds
it with any other version on a Ray cluster (ray_rebuild.py).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.inference.runtime import ModelRuntime
from service.orchestration.rebuild import offline_runtime
from service.orchestration.vector_stores import open_vector_store
from service.registry.database import make_engine
from service.registry.notes import NoteInput, NoteStore
from service.registry.tables import ModelVersion
from service.settings import Settings

MAX_ID_CHARS = 256  # notes.note_key
MAX_LABEL_CHARS = 128  # notes.category, notes.source


@dataclass(frozen=True)
class ArchiveColumns:
    """Which of the archive's columns hold what (others are ignored)."""

    id: str = "id"
    text: str = "text"
    category: str | None = None
    time: str | None = None
    source: str | None = None
    metadata: tuple[str, ...] = field(default_factory=tuple)

    def required(self) -> list[str]:
        optional = [self.category, self.time, self.source, *self.metadata]
        return [self.id, self.text, *(c for c in optional if c is not None)]


class ArchiveRejected(ValueError):
    """The archive (a column missing, a row breaking a rule) cannot be loaded as it is. Its
    message names rows and columns, never values. An offline job's error: not in the HTTP
    error table."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class BackfillResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def read_rows(
    path: Path, columns: ArchiveColumns, batch_rows: int
) -> Iterator[list[dict[str, Any]]]:
    """The archive's rows in batches, as column -> value (only the columns named)."""
    wanted = columns.required()
    if path.suffix.lower() == ".parquet":
        yield from _parquet_rows(path, wanted, batch_rows)
    elif path.suffix.lower() in {".csv", ".tsv"}:
        yield from _csv_rows(path, wanted, batch_rows, "\t" if path.suffix == ".tsv" else ",")
    else:
        raise ArchiveRejected(f"{path.name}: give a .csv, .tsv or .parquet file")


def _csv_rows(
    path: Path, wanted: list[str], batch_rows: int, delimiter: str
) -> Iterator[list[dict[str, Any]]]:
    csv.field_size_limit(sys.maxsize)  # a long note is one field
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        _check_columns(path, list(reader.fieldnames or []), wanted)
        batch: list[dict[str, Any]] = []
        for row in reader:
            batch.append({c: row[c] for c in wanted})
            if len(batch) == batch_rows:
                yield batch
                batch = []
        if batch:
            yield batch


def _parquet_rows(path: Path, wanted: list[str], batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ArchiveRejected(
            "reading Parquet needs pyarrow (pip install pyarrow, or the [ray] extra)"
        ) from None
    archive = pq.ParquetFile(path)
    _check_columns(path, list(archive.schema_arrow.names), wanted)
    for batch in archive.iter_batches(batch_size=batch_rows, columns=wanted):
        yield batch.to_pylist()


def _check_columns(path: Path, present: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ArchiveRejected(
            f"{path.name} has no column {', '.join(repr(c) for c in missing)} (it has "
            f"{', '.join(repr(c) for c in present[:20])}); name the columns with --id-column, "
            "--text-column, ..."
        )


def note_of(
    row_number: int, row: dict[str, Any], columns: ArchiveColumns, settings: Settings
) -> NoteInput:
    """A row as a note, or ArchiveRejected naming the row and the column (never a value)."""
    key = _text(row_number, row, columns.id, MAX_ID_CHARS, required=True)
    text = _text(row_number, row, columns.text, settings.max_chars_per_note, required=True)
    assert key is not None and text is not None
    labels = {
        column: _text(row_number, row, column, MAX_LABEL_CHARS, required=False)
        for column in (columns.category, columns.source)
        if column is not None
    }
    metadata = {
        column: _text(row_number, row, column, settings.max_metadata_value_chars, required=False)
        for column in columns.metadata
    }
    return NoteInput(
        key=key.strip(),
        text=text,
        category=labels.get(columns.category) if columns.category else None,
        note_time=_time(row_number, row, columns.time) if columns.time else None,
        source=labels.get(columns.source) if columns.source else None,
        extra={k: v for k, v in metadata.items() if v is not None} or None,
    )


def _rejected(row_number: int, column: str, why: str) -> ArchiveRejected:
    return ArchiveRejected(f"row {row_number}, column {column!r}: {why}", param=column)


def _text(
    row_number: int, row: dict[str, Any], column: str, limit: int, *, required: bool
) -> str | None:
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _rejected(row_number, column, "empty")
        return None
    value = str(value)
    if len(value) > limit:
        raise _rejected(row_number, column, f"{len(value)} characters; at most {limit}")
    if "\x00" in value:
        raise _rejected(row_number, column, "holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _rejected(row_number, column, "holds an unpaired surrogate") from None
    return value


def _time(row_number: int, row: dict[str, Any], column: str) -> datetime | None:
    """ISO 8601 (a Parquet timestamp as it is); a time without a zone is taken as UTC."""
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _rejected(
                row_number, column, "not an ISO 8601 time (e.g. 2026-01-31T09:30:00+00:00)"
            ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def backfill_archive(
    settings: Settings,
    row: ModelVersion,
    path: Path,
    columns: ArchiveColumns,
    batch_notes: int,
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Store and embed every note of the archive under `row`; see the module docstring."""
    engine = make_engine(settings.database_url)
    store, vector_store = open_vector_store(settings, engine)
    try:
        vector_store.prepare(row.id, row.embedding_dim)
        runtime = offline_runtime(settings, row)
        result = BackfillResult()
        for batch in read_rows(path, columns, batch_notes):
            # Row numbers count the header as row 0, as a spreadsheet shows them less one.
            notes: dict[str, NoteInput] = {}
            for offset, values in enumerate(batch, start=result.rows + 1):
                note = note_of(offset, values, columns, settings)
                # A later row with the same id replaces an earlier one, as a note sent again.
                notes[note.key] = note
            _store_batch(store, runtime, row.id, list(notes.values()), settings, result)
            result.rows += len(batch)
            if progress is not None:
                progress(result.rows)
        index = vector_store.open(row.id, row.ref, row.embedding_dim)
        index.save()
        return result
    finally:
        engine.dispose()


def _store_batch(
    store: NoteStore,
    runtime: ModelRuntime,
    version_id: int,
    notes: list[NoteInput],
    settings: Settings,
    result: BackfillResult,
) -> None:
    needed = store.vectors.needs_vector(notes, version_id)
    to_embed = [n for n, need in zip(notes, needed, strict=True) if need]
    vectors = {}
    if to_embed:
        embedded = runtime.embed_sync(
            [n.text for n in to_embed], "chunk", settings.max_batch_tokens
        )
        vectors = {n.key: v for n, v in zip(to_embed, embedded, strict=True)}
    outcome = store.upsert(notes, vectors, version_id)
    result.created += outcome.statuses.count("created")
    result.updated += outcome.statuses.count("updated")
    result.unchanged += outcome.statuses.count("unchanged")
