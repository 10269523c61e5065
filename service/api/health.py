"""Liveness, readiness, service information and Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.access import require
from service.api.deps import EmbedderDep, MetricsDep, NotesDep, SettingsDep, StateDep
from service.orchestration.access import KeyScope

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (it may still be loading a model)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(_: StateDep) -> dict[str, str]:
    """A model is loaded and warmed up: send traffic (503 `not_ready` before). Open like
    /health, so orchestrators' readiness probes need no credentials; it names nothing."""
    return {"status": "ready"}


@router.get("/info", dependencies=[Depends(require(None))])
async def info(embedder: EmbedderDep, notes: NotesDep, settings: SettingsDep) -> dict[str, Any]:
    """The serving model and every limit the service enforces."""
    m = embedder.manifest
    index = await run_in_threadpool(notes.index_state)  # pgvector: it asks the database
    return {
        "model": {
            "name": m.name,
            "version": m.version,
            "dim": m.embedding_dim,
            "max_tokens_per_window": m.max_tokens,
            "pooling": m.pooling,
            "precision": m.precision,
            "objective": m.objective,
            "base_model": m.base_model,
            "parity": m.parity.model_dump() if m.parity else None,
            "providers": embedder.providers,
        },
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_notes_per_request": settings.max_notes_per_request,
            "max_chars_per_note": settings.max_chars_per_note,
            "max_queue_tokens": settings.max_queue_tokens,
            "max_pending_requests": settings.max_pending_requests,
            "max_batch_tokens": settings.max_batch_tokens,
            "request_deadline_ms": settings.request_deadline_ms,
            "max_search_k": settings.max_search_k,
            "max_windows_per_note": settings.max_windows_per_note,
            "max_request_tokens": settings.request_token_limit,
            "max_metadata_keys": settings.max_metadata_keys,
            "max_metadata_key_chars": settings.max_metadata_key_chars,
            "max_metadata_value_chars": settings.max_metadata_value_chars,
            "max_metadata_bytes": settings.max_metadata_bytes,
            "header_read_timeout_s": settings.header_read_timeout_s,
            "body_read_timeout_s": settings.body_read_timeout_s,
        },
        "index": None
        if index is None
        else {
            "rows": index.rows,
            "sequence_watermark": index.sequence_watermark,
            "opened_from": index.opened_from,
            # pgvector keeps no checkpoint: the database's own durability stands for it.
            "snapshot": None
            if index.snapshot is None
            else {
                "state": "ok" if index.snapshot.healthy else "failing",
                **{k: v for k, v in asdict(index.snapshot).items() if k != "healthy"},
            },
        },
        "auth": "on" if settings.auth_enabled else "off",
        "long_notes": {
            "default_policy": settings.long_note_policy,
            "window_overlap_tokens": settings.window_overlap_tokens,
        },
    }


@router.get("/metrics", response_class=Response, dependencies=[Depends(require(KeyScope.ADMIN))])
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
