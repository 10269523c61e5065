"""The note store: notes and their metadata, the filters searches use, and the one write that
stores a batch of notes with their vectors (service.registry.note_vectors holds the vector log).

The database is the source of truth and the write-ahead log of every vector index: a write is
committed (vectors, metadata and sequence numbers) before the request is acknowledged; indexes
replay committed rows afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Engine, and_, case, exists, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from service.errors import Conflict
from service.registry.database import session_factory
from service.registry.note_vectors import (
    Vector,
    VectorLog,
    VectorTable,
    put_vector,
    take_sequence,
)
from service.registry.tables import Note, NoteVector, utcnow

MetadataValue = str | int | float | bool | None


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC (SQLite hands back naive datetimes; they are stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class NoteInput:
    key: str
    text: str
    category: str | None = None
    note_time: datetime | None = None
    source: str | None = None
    extra: dict[str, MetadataValue] | None = None

    @property
    def digest(self) -> str:
        return text_digest(self.text)


@dataclass(frozen=True)
class NoteMeta:
    """What may leave the service about a note: never its text or vectors."""

    row_id: int
    key: str
    category: str | None
    note_time: datetime | None
    source: str | None
    extra: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, note: Note) -> NoteMeta:
        return cls(
            row_id=note.id,
            key=note.note_key,
            category=note.category,
            note_time=_utc(note.note_time),
            source=note.source,
            extra=note.extra,
            created_at=_utc(note.created_at) or note.created_at,
            updated_at=_utc(note.updated_at) or note.updated_at,
        )


@dataclass(frozen=True)
class NoteFilters:
    categories: Sequence[str] | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    sources: Sequence[str] | None = None
    metadata: dict[str, MetadataValue] | None = None

    def is_empty(self) -> bool:
        return not (
            self.categories or self.time_from or self.time_to or self.sources or self.metadata
        )


@dataclass(frozen=True)
class UpsertOutcome:
    statuses: list[str]  # per input note: created | updated | unchanged


class NoteStore:
    def __init__(
        self, engine: Engine, *, store_text: bool, vector_table: VectorTable | None = None
    ) -> None:
        self._read = session_factory(engine)
        self._write = session_factory(engine, writer=True)
        self._dialect = engine.dialect.name
        self.store_text = store_text
        self.vectors = VectorLog(engine, vector_table)

    # -- writes ----------------------------------------------------------------------------
    def upsert(
        self, notes: Sequence[NoteInput], vectors: dict[str, Vector], model_version_id: int
    ) -> UpsertOutcome:
        """Insert or update notes, and their vectors for `model_version_id`, in one commit.

        `vectors` holds a vector for every note whose text (digest) is not already embedded
        under this model. A changed text tombstones the note's vectors under other models,
        which their next rebuild re-embeds.
        """
        now = utcnow()
        statuses: list[str] = []
        with self._write.begin() as session:
            existing = {
                n.note_key: n
                for n in session.scalars(
                    select(Note).where(Note.note_key.in_([n.key for n in notes]))
                )
            }
            vector_rows = {
                (v.note_id, v.model_version_id): v
                for v in session.scalars(
                    select(NoteVector).where(
                        NoteVector.note_id.in_([n.id for n in existing.values()])
                    )
                )
            }
            changes: list[tuple[Note, NoteInput, bool]] = []
            for item in notes:
                note = existing.get(item.key)
                if note is None:
                    note = Note(note_key=item.key, created_at=now)
                    session.add(note)
                    status, text_changed = "created", True
                else:
                    text_changed = note.text_sha256 != item.digest or note.deleted_at is not None
                    same_meta = _same_metadata(note, item)
                    if not text_changed and same_meta:
                        own = vector_rows.get((note.id, model_version_id))
                        if own is not None and own.vector is not None:
                            statuses.append("unchanged")
                            continue
                    status = "updated"
                _fill(note, item, store_text=self.store_text, now=now)
                changes.append((note, item, text_changed))
                statuses.append(status)
            session.flush()  # assign row ids to new notes

            # One sequence number per vector row touched, taken under the counter's row lock.
            touched = [
                (note, item, model_id)
                for note, item, text_changed in changes
                for model_id in _models_to_touch(
                    note.id, model_version_id, text_changed, vector_rows
                )
            ]
            sequence = take_sequence(session, len(touched))
            searchable: list[tuple[int, int, Vector]] = []
            stale: list[tuple[int, int]] = []
            for offset, (note, item, model_id) in enumerate(touched):
                seq = sequence - len(touched) + 1 + offset
                row = vector_rows.get((note.id, model_id))
                if model_id != model_version_id:
                    assert row is not None  # _models_to_touch lists only existing rows
                    row.seq, row.vector = seq, None  # stale under the other model now
                    stale.append((note.id, model_id))
                    continue
                if row is not None and row.vector is not None and row.text_sha256 == item.digest:
                    continue  # metadata-only change: the vector stands
                vector = vectors.get(item.key)
                if vector is None:
                    raise Conflict(
                        "a note in this batch changed while it was being embedded; retry"
                    )
                put_vector(
                    session,
                    row,
                    note_id=note.id,
                    model_version_id=model_id,
                    seq=seq,
                    vector=vector,
                    digest=item.digest,
                )
                searchable.append((note.id, model_id, vector))
            if self.vectors.table is not None:
                self.vectors.table.remove(session, stale)
                self.vectors.table.put(session, searchable)
        return UpsertOutcome(statuses=statuses)

    def delete(self, key: str) -> bool:
        """Delete a note: clear its text and metadata, tombstone its vectors. False if unknown."""
        with self._write.begin() as session:
            note = session.scalar(
                select(Note).where(Note.note_key == key, Note.deleted_at.is_(None))
            )
            if note is None:
                return False
            rows = session.scalars(select(NoteVector).where(NoteVector.note_id == note.id)).all()
            sequence = take_sequence(session, len(rows))
            for offset, row in enumerate(rows):
                row.seq = sequence - len(rows) + 1 + offset
                row.vector = None
            if self.vectors.table is not None:
                self.vectors.table.remove(session, [(r.note_id, r.model_version_id) for r in rows])
            note.text = None
            note.extra = None
            note.deleted_at = note.updated_at = utcnow()
            return True

    # -- reads -----------------------------------------------------------------------------
    def get(self, key: str) -> NoteMeta | None:
        with self._read() as session:
            note = session.scalar(
                select(Note).where(Note.note_key == key, Note.deleted_at.is_(None))
            )
            return NoteMeta.of(note) if note is not None else None

    def metadata_for(self, row_ids: Sequence[int]) -> dict[int, NoteMeta]:
        with self._read() as session:
            notes = session.scalars(
                select(Note).where(Note.id.in_(list(row_ids)), Note.deleted_at.is_(None))
            )
            return {n.id: NoteMeta.of(n) for n in notes}

    def filter_ids(self, filters: NoteFilters) -> npt.NDArray[np.int64]:
        conditions = filter_conditions(filters, self._dialect)
        with self._read() as session:
            ids = session.scalars(select(Note.id).where(*conditions)).all()
        return np.asarray(ids, dtype=np.int64)


def filter_conditions(filters: NoteFilters, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clause of live notes matching `filters`, on the `notes` table."""
    conditions: list[ColumnElement[bool]] = [Note.deleted_at.is_(None)]
    if filters.categories:
        conditions.append(Note.category.in_(list(filters.categories)))
    if filters.sources:
        conditions.append(Note.source.in_(list(filters.sources)))
    if filters.time_from is not None:
        conditions.append(Note.note_time >= filters.time_from)
    if filters.time_to is not None:
        conditions.append(Note.note_time <= filters.time_to)
    for key, value in (filters.metadata or {}).items():
        conditions.append(_metadata_equals(key, value, dialect))
    return conditions


def _models_to_touch(
    note_id: int | None,
    model_version_id: int,
    text_changed: bool,
    vector_rows: dict[tuple[int, int], NoteVector],
) -> list[int]:
    others = [
        model_id
        for (nid, model_id), row in vector_rows.items()
        if nid == note_id and model_id != model_version_id and row.vector is not None
    ]
    return [model_version_id, *(others if text_changed else [])]


def _fill(note: Note, item: NoteInput, *, store_text: bool, now: datetime) -> None:
    note.text = item.text if store_text else None
    note.text_sha256 = item.digest
    note.category = item.category
    note.note_time = item.note_time
    note.source = item.source
    note.extra = dict(item.extra) if item.extra else None
    note.updated_at = now
    note.deleted_at = None


def _same_metadata(note: Note, item: NoteInput) -> bool:
    return (
        note.category == item.category
        and _utc(note.note_time) == _utc(item.note_time)
        and note.source == item.source
        and (note.extra or None) == (item.extra or None)
    )


def _metadata_equals(key: str, value: MetadataValue, dialect: str) -> ColumnElement[bool]:
    """Notes whose metadata holds `key` with exactly `value` (None: the key is absent or null).

    Compared as JSON values, never by casting a note's stored value: a cast fails (PostgreSQL)
    or coerces (SQLite: 'abc' as an integer is 0) on another note's value of another type, so
    `{"mrn": 5}` must simply not match a note holding `"mrn": "abc"`. Numbers match numbers
    (5 matches 5.0), booleans only booleans, strings only strings.
    """
    if dialect == "postgresql":
        return _postgres_metadata_equals(key, value)
    return _sqlite_metadata_equals(key, value)


def _postgres_metadata_equals(key: str, value: MetadataValue) -> ColumnElement[bool]:
    document: Any = type_coerce(Note.extra, JSONB)
    if value is None:
        return func.coalesce(func.jsonb_typeof(document[key]), "null") == "null"
    return cast(ColumnElement[bool], document.contains({key: value}))


def _sqlite_metadata_equals(key: str, value: MetadataValue) -> ColumnElement[bool]:
    # json_each compares the key as a plain string (a JSON path could not address a key
    # holding '"' or '.'); json_valid keeps one malformed stored document from failing the
    # whole query for everyone.
    entries = func.json_each(Note.extra).table_valued("key", "type", "value")
    same_key = entries.c.key == key
    if value is None:
        found = exists().where(same_key, entries.c.type != "null")
        return case((func.json_valid(Note.extra) == 1, ~found), else_=Note.extra.is_(None))
    if isinstance(value, bool):
        match = entries.c.type == ("true" if value else "false")
    elif isinstance(value, int | float):
        match = and_(entries.c.type.in_(("integer", "real")), entries.c.value == value)
    else:
        match = and_(entries.c.type == "text", entries.c.value == value)
    return case((func.json_valid(Note.extra) == 1, exists().where(same_key, match)), else_=False)
