"""Offline index work for the CLI: re-embed stored notes under a model version, report coverage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Engine

from service.index.replay import snapshot_path
from service.index.snapshot import SnapshotInvalid, read_header
from service.inference.runtime import ModelRuntime
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


class RebuildStopped(RuntimeError):
    """A distributed rebuild stopped part-way (a node lost) or could not start; what it
    finished is recorded and the same command goes on from there. An offline job's error:
    not in the HTTP error table."""


@dataclass(frozen=True)
class RayRebuild:
    """How to run a rebuild on Ray: the cluster, the pool, the share of one task."""

    address: str  # a Ray cluster address, or "auto" (see ray_rebuild.connect)
    actors: int = 2  # ONNX Runtime actors (one model copy each)
    cpus_per_actor: int = 1  # each actor's intra-op threads
    range_notes: int = 512  # row ids per range: the unit of work, of progress and of resume
    checkpoint: Path | None = None  # where finished ranges are recorded (default: index_dir)


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
    *,
    ray: RayRebuild | None = None,
) -> RebuildResult:
    """Embed every live note lacking a current vector under `row`, then checkpoint its index
    (FAISS: write its snapshot; pgvector: build the version partition's HNSW index). With
    `ray`, the notes are embedded by a Ray actor pool (service/orchestration/ray_rebuild.py),
    in this process otherwise; the vectors and the index are the same either way."""
    engine = make_engine(settings.database_url)
    store, vector_store = open_vector_store(settings, engine)
    dim = row.embedding_dim
    vector_store.prepare(row.id, dim)
    live, covered = store.vectors.counts(row.id)
    if ray is not None:
        from service.orchestration.ray_rebuild import embed_on_ray  # the optional [ray] extra

        embedded, without_text = embed_on_ray(settings, row, store, batch_notes, ray, progress)
    else:
        embedded, without_text = _embed_here(
            settings, row, store, batch_notes, live - covered, progress
        )
    index = vector_store.open(row.id, row.ref, dim)
    index.save()
    stats = index.stats()
    live, covered = store.vectors.counts(row.id)
    engine.dispose()
    return RebuildResult(
        embedded=embedded,
        without_text=without_text,
        live_notes=live,
        index_rows=stats.rows,
        watermark=stats.sequence_watermark,
    )


def offline_runtime(
    settings: Settings, row: ModelVersion, *, threads: int | None = None
) -> ModelRuntime:
    """The version's runtime for a batch job: no query lane, no warm-up batches."""
    config = replace(runtime_config(settings), query_lane=False, warmup=False)
    if threads is not None:
        config = replace(config, intra_op_threads=threads)
    return load_runtime(row, config)


def embed_and_store(
    store: NoteStore,
    runtime: ModelRuntime,
    version_id: int,
    batch: Sequence[tuple[int, str | None, str]],
    max_batch_tokens: int,
) -> int:
    """Embed one batch of (row id, text, digest) and store the vectors (idempotent by note and
    version; a note changed meanwhile keeps its newer vector). Returns the notes without text."""
    with_text = [(rid, text, digest) for rid, text, digest in batch if text is not None]
    if with_text:
        vectors = runtime.embed_sync([text for _, text, _ in with_text], "chunk", max_batch_tokens)
        store.vectors.write(
            version_id, [rid for rid, _, _ in with_text], [d for _, _, d in with_text], vectors
        )
    return len(batch) - len(with_text)


def _embed_here(
    settings: Settings,
    row: ModelVersion,
    store: NoteStore,
    batch_notes: int,
    todo: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int]:
    """The plain loop: every missing note, batch after batch, in this process."""
    runtime = offline_runtime(settings, row)
    done = without_text = 0
    for batch in store.vectors.missing(row.id, batch_notes):
        without_text += embed_and_store(store, runtime, row.id, batch, settings.max_batch_tokens)
        done += len(batch)
        if progress is not None:
            progress(done, todo)
    return done - without_text, without_text


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
