"""Liveness, readiness, service information and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from service.api.deps import MetricsDep, SettingsDep
from service.api.security import require
from service.errors import NotReady
from service.notes import NoteService
from service.security import KeyScope

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (it may still be loading a model)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> dict[str, str]:
    """A model is loaded and warmed up: send traffic. Open like /health, so orchestrators'
    readiness probes need no credentials; it names nothing."""
    engine = getattr(request.state, "engine", None)
    if engine is None:
        raise NotReady("model is not loaded yet", retry_after_s=1)
    return {"status": "ready"}


@router.get("/info", dependencies=[Depends(require(None))])
async def info(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """The serving model and every limit the service enforces."""
    engine = getattr(request.state, "engine", None)
    model = None
    if engine is not None:
        m = engine.manifest
        model = {
            "name": m.name,
            "version": m.version,
            "dim": m.embedding_dim,
            "max_tokens_per_window": m.max_tokens,
            "pooling": m.pooling,
            "precision": m.precision,
            "objective": m.objective,
            "base_model": m.base_model,
            "parity": m.parity.model_dump() if m.parity else None,
            "providers": engine.providers,
        }
    return {
        "model": model,
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
        "index": _index_state(request),
        "auth": "on" if settings.auth_enabled else "off",
        "long_notes": {
            "default_policy": settings.long_note_policy,
            "window_overlap_tokens": settings.window_overlap_tokens,
        },
    }


def _index_state(request: Request) -> dict[str, Any] | None:
    """The serving model's index and whether its checkpoints are being written."""
    notes: NoteService | None = getattr(request.state, "notes", None)
    engine = getattr(request.state, "engine", None)
    version_id = engine.runtime.version_id if engine is not None else None
    index = notes.indexes.get(version_id) if notes is not None and version_id is not None else None
    if index is None:
        return None
    status = index.snapshot_status()
    return {
        "rows": len(index.index),
        "sequence_watermark": index.sequence_watermark,
        "opened_from": index.opened_from,
        "snapshot": {
            "state": "ok" if status.healthy else "failing",
            "unsaved_rows": status.unsaved_rows,
            "consecutive_failures": status.consecutive_failures,
            "last_error": status.last_error,
            "last_saved_unix_s": status.last_saved_unix_s,
        },
    }


@router.get("/metrics", response_class=Response, dependencies=[Depends(require(KeyScope.ADMIN))])
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
