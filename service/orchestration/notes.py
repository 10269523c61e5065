"""Indexing and search: embed with the serving model, commit to the database, then index.

A write is acknowledged only after its commit; the index then catches up from the database,
so the order of index updates is always the database's commit order.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service.bundle import Manifest
from service.errors import NotFound, NotReady
from service.inference.engine import EmbeddingEngine
from service.inference.runtime import ModelRuntime
from service.orchestration.vector_stores import IndexState, VectorStore, VersionVectors
from service.registry.notes import NoteFilters, NoteInput, NoteMeta, NoteStore, UpsertOutcome

# The value types of this layer's interface (api/ never imports the registry itself).
__all__ = [
    "IndexState",
    "IndexStats",
    "NoteFilters",
    "NoteInput",
    "NoteMeta",
    "NoteService",
    "SearchHit",
    "UpsertOutcome",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    note: NoteMeta
    score: float


@dataclass(frozen=True)
class IndexStats:
    """The serving model's index against the notes it should cover (GET /index/stats)."""

    model: str
    live_notes: int
    notes_with_vectors: int
    index_rows: int
    kind: str
    sequence_watermark: int
    memory_bytes: int


class NoteService:
    def __init__(self, store: NoteStore, indexes: VectorStore, engine: EmbeddingEngine) -> None:
        self.store = store
        self.indexes = indexes
        self._engine = engine
        self._write_lock = threading.Lock()  # commit + catch-up, one writer at a time

    def serving(self) -> tuple[ModelRuntime, VersionVectors]:
        """The model serving now and its index, taken together for one request."""
        runtime = self._engine.serving()
        index = self.indexes.get(runtime.version_id) if runtime.version_id is not None else None
        if index is None:
            raise NotReady("the serving model's index is not open yet", retry_after_s=1)
        return runtime, index

    async def upsert(self, notes: list[NoteInput]) -> tuple[UpsertOutcome, Manifest]:
        runtime, _ = self.serving()  # refuse before embedding if there is no index to feed
        version_id = runtime.version_id
        assert version_id is not None
        needed = await run_in_threadpool(self.store.vectors.needs_vector, notes, version_id)
        to_embed = [n for n, need in zip(notes, needed, strict=True) if need]
        vectors = {}
        if to_embed:
            result = await self._engine.embed([n.text for n in to_embed], runtime=runtime)
            vectors = {n.key: v for n, v in zip(to_embed, result.vectors, strict=True)}
        outcome = await run_in_threadpool(self._commit_upsert, notes, vectors, version_id)
        return outcome, runtime.manifest

    def _commit_upsert(
        self, notes: list[NoteInput], vectors: dict[str, np.ndarray], version_id: int
    ) -> UpsertOutcome:
        with self._write_lock:
            outcome = self.store.upsert(notes, vectors, version_id)
            self._catch_up()
        return outcome

    async def get(self, key: str) -> NoteMeta:
        """A live note's metadata (never its text)."""
        note = await run_in_threadpool(self.store.get, key)
        if note is None:
            raise NotFound("no such note", param="id")
        return note

    async def delete(self, key: str) -> None:
        def commit() -> bool:
            with self._write_lock:
                deleted = self.store.delete(key)
                self._catch_up()
                return deleted

        if not await run_in_threadpool(commit):
            raise NotFound("no such note", param="id")

    def _catch_up(self) -> None:
        # The commit is durable; if the index lags, the next catch-up (next write, the
        # periodic sync, or a restart's replay) repairs it, so the request still succeeds.
        try:
            self.indexes.catch_up_all()
            self.indexes.snapshot_due()
        except (OSError, RuntimeError, ValueError, MemoryError, SQLAlchemyError) as exc:
            # SQLAlchemyError: the database went away between the commit and the replay.
            log.error("index catch-up failed after commit (%s); will retry", type(exc).__name__)

    async def search(
        self, *, text: str | None, note_key: str | None, k: int, filters: NoteFilters
    ) -> tuple[list[SearchHit], Manifest]:
        runtime, index = self.serving()
        version_id = runtime.version_id
        assert version_id is not None
        exclude: int | None = None
        if text is not None:
            query = (await self._engine.embed([text], runtime=runtime)).vectors
        else:
            assert note_key is not None
            found = await run_in_threadpool(self.store.vectors.vector_of, note_key, version_id)
            if found is None:
                raise NotFound(
                    f"note_id is not indexed under {runtime.manifest.ref}", param="note_id"
                )
            exclude, vector = found
            query = vector.reshape(1, -1)
        wanted = k + (1 if exclude is not None else 0)
        result = await run_in_threadpool(index.search, query, wanted, filters)
        hits = [(rid, score) for rid, score in result.hits(0) if rid != exclude][:k]
        metas = await run_in_threadpool(self.store.metadata_for, [rid for rid, _ in hits])
        return [SearchHit(metas[rid], score) for rid, score in hits if rid in metas], (
            runtime.manifest
        )

    async def index_stats(self) -> IndexStats:
        runtime, index = self.serving()
        assert runtime.version_id is not None
        live, covered = await run_in_threadpool(self.store.vectors.counts, runtime.version_id)
        stats = await run_in_threadpool(index.stats)
        return IndexStats(
            model=runtime.manifest.ref,
            live_notes=live,
            notes_with_vectors=covered,
            index_rows=stats.rows,
            kind=stats.kind,
            sequence_watermark=stats.sequence_watermark,
            memory_bytes=stats.memory_bytes,
        )

    def index_state(self) -> IndexState | None:
        """The serving model's index, or None while it is not open."""
        version_id = self._engine.serving().version_id
        index = self.indexes.get(version_id) if version_id is not None else None
        return None if index is None else index.state()
