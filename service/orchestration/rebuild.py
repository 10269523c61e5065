"""Offline index work for the CLI: re-embed stored notes under a model version, report coverage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from service.index.replay import snapshot_path
from service.index.snapshot import SnapshotInvalid, read_header
from service.orchestration.configs import pgvector_config, runtime_config
from service.orchestration.indexes import index_ref
from service.orchestration.serving import load_runtime
from service.orchestration.vector_stores import open_vector_store
from service.registry.database import make_engine
from service.registry.notes import NoteStore
from service.registry.pgvector_store import PgvectorStore
from service.registry.tables import ModelVersion
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildResult:
    embedded: int
    without_text: int
    live_notes: int
    index_rows: int
    watermark: int


def rebuild_index(
    settings: Settings,
    row: ModelVersion,
    batch_notes: int,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Embed every live note lacking a current vector under `row`, then checkpoint its index
    (FAISS: write its snapshot; pgvector: build the version partition's HNSW index)."""
    engine = make_engine(settings.database_url)
    store, vector_store = open_vector_store(settings, engine)
    # Offline: no query lane, no warm-up batches.
    runtime = load_runtime(row, replace(runtime_config(settings), query_lane=False, warmup=False))
    dim = runtime.manifest.embedding_dim
    vector_store.prepare(row.id, dim)
    live, covered = store.vectors.counts(row.id)
    todo, done, without_text = live - covered, 0, 0
    for batch in store.vectors.missing(row.id, batch_notes):
        with_text = [(rid, text, digest) for rid, text, digest in batch if text is not None]
        without_text += len(batch) - len(with_text)
        if with_text:
            vectors = runtime.embed_sync(
                [text for _, text, _ in with_text], "chunk", settings.max_batch_tokens
            )
            store.vectors.write(
                row.id, [rid for rid, _, _ in with_text], [d for _, _, d in with_text], vectors
            )
        done += len(batch)
        if progress is not None:
            progress(done, todo)
    index = vector_store.open(row.id, row.ref, dim)
    index.save()
    stats = index.stats()
    live, covered = store.vectors.counts(row.id)
    engine.dispose()
    return RebuildResult(
        embedded=done - without_text,
        without_text=without_text,
        live_notes=live,
        index_rows=stats.rows,
        watermark=stats.sequence_watermark,
    )


@dataclass(frozen=True)
class Coverage:
    """One version's vectors against the stored notes, and its snapshot on disk (FAISS) or
    its partition of `note_embeddings` (pgvector, always at the log's newest sequence)."""

    model: str
    status: str
    live_notes: int
    notes_with_vectors: int
    snapshot_rows: int | None  # None: no readable snapshot (no partition)
    snapshot_watermark: int | None

    @property
    def share(self) -> float | None:
        return self.notes_with_vectors / self.live_notes if self.live_notes else None


def coverage_report(settings: Settings, rows: Sequence[ModelVersion]) -> list[Coverage]:
    engine = make_engine(settings.database_url)
    store = NoteStore(engine, store_text=settings.store_note_text)
    report: list[Coverage] = []
    for row in rows:
        live, covered = store.vectors.counts(row.id)
        if settings.vector_store == "pgvector":
            count, watermark = _partition_rows(settings, store, engine, row.id)
        else:
            count, watermark = _snapshot_rows(settings, row)
        report.append(Coverage(row.ref, row.status, live, covered, count, watermark))
    engine.dispose()
    return report


def _snapshot_rows(settings: Settings, row: ModelVersion) -> tuple[int | None, int | None]:
    try:
        header = read_header(snapshot_path(settings.index_dir, index_ref(row.ref, row.id)))
    except (SnapshotInvalid, OSError):
        return None, None
    return header.count, header.sequence_watermark


def _partition_rows(
    settings: Settings, store: NoteStore, engine: Engine, version_id: int
) -> tuple[int | None, int | None]:
    partition = PgvectorStore(engine, pgvector_config(settings)).stats(version_id)
    if partition is None:
        return None, None
    return partition.rows, store.vectors.max_sequence()
