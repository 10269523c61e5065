"""Where note vectors are searched: FAISS in this process, or pgvector in the notes database.

Both answer the same two questions for the service, whatever holds the vectors: search one
model version's vectors with metadata filters, and say what it holds. FAISS filters by an id
list taken from the database and keeps itself current by replaying the database's log after
each commit; pgvector filters in the search statement itself and is current by construction
(its rows are written in the note's transaction), so its catch-up and snapshot calls do nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import Engine

from service.index.base import MISSING_ID, SearchResult, Vectors
from service.index.replay import ManagedIndex, SnapshotStatus
from service.orchestration.configs import index_manager_config, pgvector_config
from service.orchestration.indexes import NoteIndexes
from service.registry.notes import NoteFilters, NoteStore
from service.registry.pgvector_store import PartitionStats, PgvectorStore
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorStats:
    rows: int
    kind: str  # flat | hnsw (FAISS), pgvector-hnsw
    memory_bytes: int  # FAISS: process memory; pgvector: the partition on disk, indexes included
    sequence_watermark: int  # the database's log position the vectors reflect


@dataclass(frozen=True)
class IndexState:
    """The serving model's index and whether its checkpoints are being written (GET /info)."""

    rows: int
    sequence_watermark: int
    opened_from: str  # snapshot | rebuild (FAISS), database (pgvector)
    snapshot: SnapshotStatus | None  # None: the store has no checkpoints (pgvector)


class VersionVectors(Protocol):
    """One model version's searchable vectors."""

    def search(self, queries: Vectors, k: int, filters: NoteFilters) -> SearchResult:
        """Top-k by inner product among live notes matching `filters`."""
        ...

    def stats(self) -> VectorStats: ...

    def state(self) -> IndexState: ...

    def save(self) -> None:
        """Make what is held durable now (offline jobs); raises if it cannot."""
        ...


class VectorStore(Protocol):
    """Every open version's vectors: what the service, the switcher and a rebuild use."""

    def prepare(self, version_id: int, dim: int) -> None:
        """Get ready for a bulk load of a version's vectors (before a rebuild writes them)."""
        ...

    def open(self, version_id: int, model_ref: str, dim: int) -> VersionVectors:
        """The version's vectors, ready to search (blocking: may build an index)."""
        ...

    def get(self, version_id: int) -> VersionVectors | None: ...

    def catch_up_all(self) -> int:
        """Apply writes committed elsewhere; returns rows applied."""
        ...

    def snapshot_due(self) -> None: ...

    def snapshot_failing(self) -> bool: ...

    def close(self) -> None: ...


def open_vector_store(settings: Settings, db: Engine) -> tuple[NoteStore, VectorStore]:
    """The note store and the vector store the settings choose, wired to write together.
    With pgvector, raises `PgvectorMissing` when the database lacks the extension."""
    if settings.vector_store == "pgvector":
        pgvector = PgvectorStore(db, pgvector_config(settings))
        pgvector.ensure_schema()
        store = NoteStore(db, store_text=settings.store_note_text, vector_table=pgvector)
        return store, PgvectorVectorStore(pgvector, store)
    store = NoteStore(db, store_text=settings.store_note_text)
    return store, FaissVectorStore(NoteIndexes(store, index_manager_config(settings)), store)


def no_hits(queries: int, k: int) -> SearchResult:
    return SearchResult(
        scores=np.full((queries, k), -np.inf, dtype=np.float32),
        ids=np.full((queries, k), MISSING_ID, dtype=np.int64),
    )


class FaissVersionVectors:
    def __init__(self, index: ManagedIndex, store: NoteStore) -> None:
        self._index = index
        self._store = store

    def search(self, queries: Vectors, k: int, filters: NoteFilters) -> SearchResult:
        if filters.is_empty():
            return self._index.search(queries, k)
        allowed = self._store.filter_ids(filters)
        if allowed.size == 0:
            return no_hits(queries.shape[0], k)
        return self._index.search(queries, k, allowed)

    def stats(self) -> VectorStats:
        stats = self._index.stats()
        return VectorStats(
            rows=stats.live_rows,
            kind=stats.kind,
            memory_bytes=stats.faiss_bytes + stats.id_map_bytes,
            sequence_watermark=self._index.sequence_watermark,
        )

    def state(self) -> IndexState:
        return IndexState(
            rows=len(self._index.index),
            sequence_watermark=self._index.sequence_watermark,
            opened_from=self._index.opened_from,
            snapshot=self._index.snapshot_status(),
        )

    def save(self) -> None:
        self._index.snapshot()


class FaissVectorStore:
    """FAISS indexes in this process, one per version, replayed from the database's log."""

    def __init__(self, indexes: NoteIndexes, store: NoteStore) -> None:
        self.indexes = indexes
        self._store = store

    def prepare(self, version_id: int, dim: int) -> None:
        return None  # the log is the load; the index is built from it on open

    def open(self, version_id: int, model_ref: str, dim: int) -> VersionVectors:
        return FaissVersionVectors(self.indexes.open(version_id, model_ref, dim), self._store)

    def get(self, version_id: int) -> VersionVectors | None:
        index = self.indexes.get(version_id)
        return None if index is None else FaissVersionVectors(index, self._store)

    def catch_up_all(self) -> int:
        return self.indexes.catch_up_all()

    def snapshot_due(self) -> None:
        self.indexes.snapshot_due()

    def snapshot_failing(self) -> bool:
        return self.indexes.snapshot_failing()

    def close(self) -> None:
        self.indexes.close()


class PgvectorVersionVectors:
    def __init__(self, pgvector: PgvectorStore, store: NoteStore, version_id: int, dim: int):
        self._pgvector = pgvector
        self._store = store
        self._version_id = version_id
        self._dim = dim

    def search(self, queries: Vectors, k: int, filters: NoteFilters) -> SearchResult:
        return self._pgvector.search(self._version_id, self._dim, queries, k, filters)

    def stats(self) -> VectorStats:
        partition = self._pgvector.stats(self._version_id) or PartitionStats(0, 0, False)
        return VectorStats(
            rows=partition.rows,
            kind="pgvector-hnsw" if partition.has_index else "pgvector-exact",
            memory_bytes=partition.bytes,
            sequence_watermark=self._store.vectors.max_sequence(),
        )

    def state(self) -> IndexState:
        stats = self.stats()
        return IndexState(
            rows=stats.rows,
            sequence_watermark=stats.sequence_watermark,
            opened_from="database",
            snapshot=None,
        )

    def save(self) -> None:
        return None  # committed rows are already durable


class PgvectorVectorStore:
    """Partitions of `note_embeddings`; nothing held in this process but their names."""

    def __init__(self, pgvector: PgvectorStore, store: NoteStore) -> None:
        self._pgvector = pgvector
        self._store = store
        self._open: dict[int, PgvectorVersionVectors] = {}

    def prepare(self, version_id: int, dim: int) -> None:
        # A new version's partition starts without its HNSW index: one build after the load
        # is much faster than growing the graph row by row.
        self._pgvector.ensure_partition(version_id, dim, with_index=False)

    def open(self, version_id: int, model_ref: str, dim: int) -> VersionVectors:
        # Vectors the log holds but the partition lacks (a database that ran the FAISS store
        # until now) are copied before the index is built, so switching stores needs no
        # re-embedding.
        self._pgvector.ensure_partition(version_id, dim, with_index=False)
        copied = self._pgvector.copy_from_log(version_id, dim)
        if copied:
            log.info("copied %d vectors of %s from the vector log into pgvector", copied, model_ref)
        self._pgvector.ensure_partition(version_id, dim)
        vectors = PgvectorVersionVectors(self._pgvector, self._store, version_id, dim)
        self._open[version_id] = vectors
        return vectors

    def get(self, version_id: int) -> VersionVectors | None:
        return self._open.get(version_id)

    def catch_up_all(self) -> int:
        return 0  # every committed write is already in the table

    def snapshot_due(self) -> None:
        return None

    def snapshot_failing(self) -> bool:
        return False

    def close(self) -> None:
        self._open.clear()
