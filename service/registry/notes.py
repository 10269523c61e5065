"""The note store: notes, their vectors per model version, and the change sequence for replay.

The database is the source of truth and the write-ahead log of every vector index: a write is
committed (vectors, metadata and sequence numbers) before the request is acknowledged; indexes
replay committed rows afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.index.replay import RowBatch
from service.registry.database import session_factory
from service.registry.tables import IndexSequence, Note, NoteVector, utcnow

Vector = npt.NDArray[np.float32]
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
    row_ids: list[int]


class NoteStore:
    def __init__(self, engine: Engine, *, store_text: bool) -> None:
        self._read = session_factory(engine)
        self._write = session_factory(engine, writer=True)
        self._dialect = engine.dialect.name
        self.store_text = store_text

    # -- writes ----------------------------------------------------------------------------
    def needs_vector(self, notes: Sequence[NoteInput], model_version_id: int) -> list[bool]:
        """Which notes must be embedded: new, changed text, or no vector for this model."""
        keys = [n.key for n in notes]
        with self._read() as session:
            current = dict(
                session.execute(
                    select(Note.note_key, NoteVector.text_sha256)
                    .join(
                        NoteVector,
                        and_(
                            NoteVector.note_id == Note.id,
                            NoteVector.model_version_id == model_version_id,
                            NoteVector.vector.is_not(None),
                        ),
                    )
                    .where(Note.note_key.in_(keys), Note.deleted_at.is_(None))
                ).all()
            )
        return [current.get(n.key) != n.digest for n in notes]

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
        row_ids: list[int] = []
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
                            row_ids.append(note.id)
                            continue
                    status = "updated"
                _fill(note, item, store_text=self.store_text, now=now)
                changes.append((note, item, text_changed))
                statuses.append(status)
                row_ids.append(-1)
            session.flush()  # assign row ids to new notes

            # One sequence number per vector row touched, taken under the counter's row lock.
            touched = [
                (note, item, model_id)
                for note, item, text_changed in changes
                for model_id in _models_to_touch(
                    note.id, model_version_id, text_changed, vector_rows
                )
            ]
            sequence = _take_sequence(session, len(touched))
            for offset, (note, item, model_id) in enumerate(touched):
                seq = sequence - len(touched) + 1 + offset
                row = vector_rows.get((note.id, model_id))
                if model_id != model_version_id:
                    assert row is not None  # _models_to_touch lists only existing rows
                    row.seq, row.vector = seq, None  # stale under the other model now
                    continue
                if row is not None and row.vector is not None and row.text_sha256 == item.digest:
                    continue  # metadata-only change: the vector stands
                vector = vectors.get(item.key)
                if vector is None:
                    raise Conflict(
                        "a note in this batch changed while it was being embedded; retry"
                    )
                payload = np.asarray(vector, dtype="<f4").tobytes()
                if row is None:
                    session.add(
                        NoteVector(
                            note_id=note.id,
                            model_version_id=model_id,
                            seq=seq,
                            vector=payload,
                            text_sha256=item.digest,
                        )
                    )
                else:
                    row.seq, row.vector, row.text_sha256 = seq, payload, item.digest
            session.flush()
            ids_by_key = {note.note_key: note.id for note, _, _ in changes}
        return UpsertOutcome(
            statuses=statuses,
            row_ids=[
                rid if rid >= 0 else ids_by_key[n.key]
                for rid, n in zip(row_ids, notes, strict=True)
            ],
        )

    def delete(self, key: str) -> bool:
        """Delete a note: clear its text and metadata, tombstone its vectors. False if unknown."""
        with self._write.begin() as session:
            note = session.scalar(
                select(Note).where(Note.note_key == key, Note.deleted_at.is_(None))
            )
            if note is None:
                return False
            rows = session.scalars(select(NoteVector).where(NoteVector.note_id == note.id)).all()
            sequence = _take_sequence(session, len(rows))
            for offset, row in enumerate(rows):
                row.seq = sequence - len(rows) + 1 + offset
                row.vector = None
            note.text = None
            note.extra = None
            note.deleted_at = note.updated_at = utcnow()
            return True

    def write_vectors(
        self,
        model_version_id: int,
        row_ids: Sequence[int],
        digests: Sequence[str],
        vectors: Vector,
    ) -> int:
        """Store re-embedded vectors (index rebuild) unless the note changed meanwhile."""
        with self._write.begin() as session:
            notes = {
                n.id: n
                for n in session.scalars(
                    select(Note).where(Note.id.in_(list(row_ids)), Note.deleted_at.is_(None))
                )
            }
            current = [
                (rid, digest, vector)
                for rid, digest, vector in zip(row_ids, digests, vectors, strict=True)
                if rid in notes and notes[rid].text_sha256 == digest
            ]
            existing = {
                v.note_id: v
                for v in session.scalars(
                    select(NoteVector).where(
                        NoteVector.model_version_id == model_version_id,
                        NoteVector.note_id.in_([c[0] for c in current]),
                    )
                )
            }
            sequence = _take_sequence(session, len(current))
            for offset, (rid, digest, vector) in enumerate(current):
                seq = sequence - len(current) + 1 + offset
                payload = np.asarray(vector, dtype="<f4").tobytes()
                row = existing.get(rid)
                if row is None:
                    session.add(
                        NoteVector(
                            note_id=rid,
                            model_version_id=model_version_id,
                            seq=seq,
                            vector=payload,
                            text_sha256=digest,
                        )
                    )
                else:
                    row.seq, row.vector, row.text_sha256 = seq, payload, digest
            return len(current)

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

    def vector_of(self, key: str, model_version_id: int) -> tuple[int, Vector] | None:
        """(row id, vector) of a live note under a model, or None."""
        with self._read() as session:
            found = session.execute(
                select(Note.id, NoteVector.vector)
                .join(NoteVector, NoteVector.note_id == Note.id)
                .where(
                    Note.note_key == key,
                    Note.deleted_at.is_(None),
                    NoteVector.model_version_id == model_version_id,
                    NoteVector.vector.is_not(None),
                )
            ).first()
        if found is None or found[1] is None:
            return None
        return int(found[0]), np.frombuffer(found[1], dtype="<f4").astype(np.float32)

    def filter_ids(self, filters: NoteFilters) -> npt.NDArray[np.int64]:
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
            conditions.append(_metadata_equals(key, value, self._dialect))
        with self._read() as session:
            ids = session.scalars(select(Note.id).where(*conditions)).all()
        return np.asarray(ids, dtype=np.int64)

    def counts(self, model_version_id: int) -> tuple[int, int]:
        """(live notes, live notes with a current vector under this model)."""
        with self._read() as session:
            live = session.scalar(select(func.count()).where(Note.deleted_at.is_(None))) or 0
            covered = (
                session.scalar(
                    select(func.count())
                    .select_from(Note)
                    .join(NoteVector, NoteVector.note_id == Note.id)
                    .where(
                        Note.deleted_at.is_(None),
                        NoteVector.model_version_id == model_version_id,
                        NoteVector.vector.is_not(None),
                        NoteVector.text_sha256 == Note.text_sha256,
                    )
                )
                or 0
            )
        return int(live), int(covered)

    def missing_vectors(
        self, model_version_id: int, batch_rows: int
    ) -> Iterator[list[tuple[int, str | None, str]]]:
        """Live notes without a current vector under a model: (row id, text, digest) batches.
        Text is None when the note was stored without it."""
        after = 0
        while True:
            with self._read() as session:
                rows = session.execute(
                    select(Note.id, Note.text, Note.text_sha256)
                    .outerjoin(
                        NoteVector,
                        and_(
                            NoteVector.note_id == Note.id,
                            NoteVector.model_version_id == model_version_id,
                        ),
                    )
                    .where(
                        Note.deleted_at.is_(None),
                        Note.id > after,
                        or_(
                            NoteVector.note_id.is_(None),
                            NoteVector.vector.is_(None),
                            NoteVector.text_sha256 != Note.text_sha256,
                        ),
                    )
                    .order_by(Note.id)
                    .limit(batch_rows)
                ).all()
            if not rows:
                return
            yield [(int(r[0]), r[1], r[2]) for r in rows]
            after = int(rows[-1][0])

    def max_sequence(self) -> int:
        with self._read() as session:
            return int(
                session.scalar(select(IndexSequence.value).where(IndexSequence.id == 1)) or 0
            )

    def vector_source(self, model_version_id: int, dim: int) -> DatabaseVectorSource:
        return DatabaseVectorSource(self, model_version_id, dim)

    def iter_vector_rows(
        self, model_version_id: int, dim: int, after_sequence: int, batch_rows: int
    ) -> Iterator[RowBatch]:
        after = after_sequence
        while True:
            with self._read() as session:
                rows = session.execute(
                    select(NoteVector.note_id, NoteVector.vector, NoteVector.seq)
                    .where(
                        NoteVector.model_version_id == model_version_id,
                        NoteVector.seq > after,
                    )
                    .order_by(NoteVector.seq)
                    .limit(batch_rows)
                ).all()
            if not rows:
                return
            live = [(int(r[0]), r[1]) for r in rows if r[1] is not None]
            vectors = np.frombuffer(b"".join(v for _, v in live), dtype="<f4").astype(np.float32)
            yield RowBatch(
                ids=np.asarray([i for i, _ in live], dtype=np.int64),
                vectors=vectors.reshape(len(live), dim),
                deleted_ids=np.asarray([int(r[0]) for r in rows if r[1] is None], dtype=np.int64),
                sequence=int(rows[-1][2]),
            )
            after = int(rows[-1][2])


class DatabaseVectorSource:
    """The replay source of one model version's index."""

    def __init__(self, store: NoteStore, model_version_id: int, dim: int) -> None:
        self._store = store
        self._model_version_id = model_version_id
        self._dim = dim

    def max_sequence(self) -> int:
        return self._store.max_sequence()

    def iter_rows(self, after_sequence: int, batch_rows: int) -> Iterator[RowBatch]:
        return self._store.iter_vector_rows(
            self._model_version_id, self._dim, after_sequence, batch_rows
        )


def _take_sequence(session: Session, count: int) -> int:
    """Reserve `count` sequence numbers; returns the highest. Holds the counter's row lock
    until commit, so sequence order is commit order across processes."""
    value = session.scalar(
        update(IndexSequence)
        .where(IndexSequence.id == 1)
        .values(value=IndexSequence.value + count)
        .returning(IndexSequence.value)
    )
    assert value is not None, "index_sequence row missing: run `notespace db upgrade`"
    return int(value)


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
