"""The small configs each layer below takes, built from the service's one `Settings`."""

from __future__ import annotations

from service.index.faiss_index import IndexConfig
from service.index.replay import ManagerConfig
from service.inference.config import BatcherConfig, EngineConfig, RuntimeConfig, WindowConfig
from service.registry.pgvector_store import PgvectorConfig
from service.settings import Settings


def runtime_config(settings: Settings) -> RuntimeConfig:
    return RuntimeConfig(
        device=settings.device,
        intra_op_threads=settings.intra_op_threads,
        runtime=settings.runtime,
        cpu_precision=settings.cpu_precision,
        ort_cpu_arena=settings.ort_cpu_arena,
        ort_thread_spinning=settings.ort_thread_spinning,
        query_lane=settings.query_lane_max_tokens > 0,
        warmup=settings.warmup,
        window=WindowConfig(
            overlap_tokens=settings.window_overlap_tokens,
            max_windows_per_note=settings.max_windows_per_note,
        ),
    )


def batcher_config(settings: Settings) -> BatcherConfig:
    return BatcherConfig(
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_tokens=settings.max_queue_tokens,
        retry_after_s=settings.retry_after_s,
        max_request_tokens=settings.request_token_limit,
        max_pending_requests=settings.max_pending_requests,
    )


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        long_note_policy=settings.long_note_policy,
        request_deadline_ms=settings.request_deadline_ms,
        query_lane_max_tokens=settings.query_lane_max_tokens,
        max_batch_tokens=settings.max_batch_tokens,
    )


def index_manager_config(settings: Settings) -> ManagerConfig:
    return ManagerConfig(
        snapshot_dir=settings.index_dir,
        snapshot_every_writes=settings.index_snapshot_every_writes,
        snapshot_every_s=settings.index_snapshot_every_s,
        snapshot_retry_s=settings.index_snapshot_retry_s,
        index=IndexConfig(kind=settings.index_kind, hnsw_min_rows=settings.index_hnsw_min_rows),
    )


def pgvector_config(settings: Settings) -> PgvectorConfig:
    return PgvectorConfig(
        hnsw_m=settings.pgvector_hnsw_m,
        ef_construction=settings.pgvector_ef_construction,
        ef_search=settings.pgvector_ef_search,
        exact_max_rows=settings.pgvector_exact_max_rows,
    )
