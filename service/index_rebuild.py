"""Offline index work for the CLI: re-embed stored notes under a model version, report coverage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.index.replay import snapshot_path
from service.index.snapshot import SnapshotInvalid, read_header
from service.note_index import NoteIndexes, index_ref, manager_config
from service.registry.database import make_engine
from service.registry.notes import NoteStore
from service.registry.tables import ModelVersion
from service.serving import load_runtime
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
    """Embed every live note lacking a current vector under `row`, then checkpoint its index."""
    engine = make_engine(settings.database_url)
    store = NoteStore(engine, store_text=settings.store_note_text)
    runtime = load_runtime(row, settings)
    live, covered = store.counts(row.id)
    todo, done, without_text = live - covered, 0, 0
    for batch in store.missing_vectors(row.id, batch_notes):
        with_text = [(rid, text, digest) for rid, text, digest in batch if text is not None]
        without_text += len(batch) - len(with_text)
        if with_text:
            vectors = runtime.embed_sync(
                [text for _, text, _ in with_text], "chunk", settings.max_batch_tokens
            )
            store.write_vectors(
                row.id, [rid for rid, _, _ in with_text], [d for _, _, d in with_text], vectors
            )
        done += len(batch)
        if progress is not None:
            progress(done, todo)
    indexes = NoteIndexes(store, manager_config(settings))
    index = indexes.open(row.id, row.ref, runtime.manifest.embedding_dim)
    index.snapshot()
    live, covered = store.counts(row.id)
    engine.dispose()
    return RebuildResult(
        embedded=done - without_text,
        without_text=without_text,
        live_notes=live,
        index_rows=len(index.index),
        watermark=index.sequence_watermark,
    )


def coverage_report(settings: Settings, rows: Sequence[ModelVersion]) -> list[tuple[str, ...]]:
    engine = make_engine(settings.database_url)
    store = NoteStore(engine, store_text=settings.store_note_text)
    lines: list[tuple[str, ...]] = []
    for row in rows:
        live, covered = store.counts(row.id)
        path = snapshot_path(settings.index_dir, index_ref(row.ref, row.id))
        try:
            header = read_header(path)
            snapshot = f"{header.count} rows, watermark {header.sequence_watermark}"
        except (SnapshotInvalid, OSError):
            snapshot = "none"
        share = f"{100 * covered / live:.1f}%" if live else "-"
        lines.append((row.ref, row.status, str(live), str(covered), share, snapshot))
    engine.dispose()
    return lines
