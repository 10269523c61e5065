"""The vector log: each live note's vector under each model version, every change numbered by a
commit-ordered sequence. It is the write-ahead log every vector index replays
(service.index.replay.VectorSource): a change is committed here before it is acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, and_, func, or_, select, true, update
from sqlalchemy.orm import Session

from service.index.replay import RowBatch
from service.registry.database import session_factory
from service.registry.tables import IndexSequence, Note, NoteVector

Vector = npt.NDArray[np.float32]


class VectorTable(Protocol):
    """A searchable copy of the vectors in this database (the pgvector store), written in the
    same transaction as the log, so a vector is searchable exactly when its note is committed."""

    def put(self, session: Session, rows: Sequence[tuple[int, int, Vector]]) -> None:
        """Insert or replace (note id, model version id, vector) rows."""
        ...

    def remove(self, session: Session, rows: Sequence[tuple[int, int]]) -> None:
        """Drop (note id, model version id) rows."""
        ...


class HasKeyAndDigest(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def digest(self) -> str: ...


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """A vector as stored: little-endian float32, whatever the machine."""
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_vectors(blobs: Sequence[bytes], dim: int) -> Vector:
    """Stored vectors back as one [N, dim] float32 array."""
    flat = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
    return flat.reshape(len(blobs), dim)


def take_sequence(session: Session, count: int) -> int:
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


def put_vector(
    session: Session,
    row: NoteVector | None,
    *,
    note_id: int,
    model_version_id: int,
    seq: int,
    vector: npt.ArrayLike,
    digest: str,
) -> None:
    """Insert the note's vector under the model, or update the row it already has."""
    payload = encode_vector(vector)
    if row is None:
        session.add(
            NoteVector(
                note_id=note_id,
                model_version_id=model_version_id,
                seq=seq,
                vector=payload,
                text_sha256=digest,
            )
        )
    else:
        row.seq, row.vector, row.text_sha256 = seq, payload, digest


class VectorLog:
    def __init__(self, engine: Engine, table: VectorTable | None = None) -> None:
        self._read = session_factory(engine)
        self._write = session_factory(engine, writer=True)
        self.table = table

    def needs_vector(self, notes: Sequence[HasKeyAndDigest], model_version_id: int) -> list[bool]:
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

    def write(
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
            sequence = take_sequence(session, len(current))
            for offset, (rid, digest, vector) in enumerate(current):
                put_vector(
                    session,
                    existing.get(rid),
                    note_id=rid,
                    model_version_id=model_version_id,
                    seq=sequence - len(current) + 1 + offset,
                    vector=vector,
                    digest=digest,
                )
            if self.table is not None:
                self.table.put(session, [(rid, model_version_id, v) for rid, _, v in current])
            return len(current)

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
        blob: bytes = found[1]
        return int(found[0]), decode_vectors([blob], len(blob) // 4)[0]

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

    def missing(
        self,
        model_version_id: int,
        batch_rows: int,
        *,
        id_range: tuple[int, int] | None = None,
    ) -> Iterator[list[tuple[int, str | None, str]]]:
        """Live notes without a current vector under a model: (row id, text, digest) batches,
        optionally only those with `first <= row id <= last` (a distributed rebuild's share).
        Text is None when the note was stored without it."""
        after = id_range[0] - 1 if id_range is not None else 0
        last = id_range[1] if id_range is not None else None
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
                        Note.id <= last if last is not None else true(),
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

    def note_id_bounds(self) -> tuple[int, int] | None:
        """The lowest and highest row id of any note (live or deleted), or None when empty."""
        with self._read() as session:
            low, high = session.execute(select(func.min(Note.id), func.max(Note.id))).one()
        return None if low is None else (int(low), int(high))

    def max_sequence(self) -> int:
        with self._read() as session:
            return int(
                session.scalar(select(IndexSequence.value).where(IndexSequence.id == 1)) or 0
            )

    def iter_rows(
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
            yield RowBatch(
                ids=np.asarray([i for i, _ in live], dtype=np.int64),
                vectors=decode_vectors([v for _, v in live], dim),
                deleted_ids=np.asarray([int(r[0]) for r in rows if r[1] is None], dtype=np.int64),
                sequence=int(rows[-1][2]),
            )
            after = int(rows[-1][2])

    def source(self, model_version_id: int, dim: int) -> DatabaseVectorSource:
        return DatabaseVectorSource(self, model_version_id, dim)


class DatabaseVectorSource:
    """The replay source of one model version's index."""

    def __init__(self, log: VectorLog, model_version_id: int, dim: int) -> None:
        self._log = log
        self._model_version_id = model_version_id
        self._dim = dim

    def max_sequence(self) -> int:
        return self._log.max_sequence()

    def iter_rows(self, after_sequence: int, batch_rows: int) -> Iterator[RowBatch]:
        return self._log.iter_rows(self._model_version_id, self._dim, after_sequence, batch_rows)
