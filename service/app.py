"""create_app(settings): the FastAPI application, its lifespan and middleware."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import faiss
from fastapi import Depends, FastAPI
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import classify, embed, health, models, notes, openai_compat
from service.api.access_log import redact_access_log
from service.api.body_limit import BodyLimitMiddleware
from service.api.docs import install_api_docs
from service.api.errors import install_error_handlers
from service.api.input_rules import enforce_input_rules
from service.api.last_resort import LastResortMiddleware
from service.api.responses import StatusCapture
from service.api.security import AuditMiddleware, SecurityContext, require
from service.audit import AuditLog
from service.bundle import BundleError
from service.errors import NotespaceError
from service.inference.batcher import Batcher
from service.inference.engine import EmbeddingEngine
from service.metrics import ServiceMetrics
from service.note_index import NoteIndexes, manager_config
from service.notes import NoteService
from service.registry.database import SchemaError, check_schema, make_engine
from service.registry.models import ModelRegistry
from service.registry.notes import NoteStore
from service.security import KeyScope, KeyStore, QuotaLimiter
from service.serving import ModelSwitcher, StartupError, load_runtime, resolve_serving_version
from service.settings import Settings

log = logging.getLogger(__name__)


class RequestMetricsMiddleware:
    """Counts requests by route *template* (never the raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        capture = StatusCapture(send)
        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(capture.status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class Resources:
    """Everything the lifespan builds and the routes use."""

    db: Engine
    registry: ModelRegistry
    engine: EmbeddingEngine
    batcher: Batcher
    switcher: ModelSwitcher
    indexes: NoteIndexes
    notes: NoteService
    security: SecurityContext
    audit: AuditLog


def build_resources(settings: Settings, metrics: ServiceMetrics) -> Resources:
    """Check the schema, choose the model from the registry, load and warm it, start inference."""
    faiss.omp_set_num_threads(settings.index_threads)  # process-wide, so set by the app
    db = make_engine(
        settings.database_url,
        connect_timeout_s=settings.database_connect_timeout_s,
        statement_timeout_ms=settings.database_statement_timeout_ms or None,
    )
    try:
        check_schema(db)
        registry = ModelRegistry(db)
        row = resolve_serving_version(registry, settings)
        runtime = load_runtime(row, settings)
        store = NoteStore(db, store_text=settings.store_note_text)
        indexes = NoteIndexes(store, manager_config(settings))
        indexes.open(row.id, row.ref, runtime.manifest.embedding_dim)
    except (SchemaError, StartupError, BundleError, NotespaceError) as exc:
        db.dispose()
        log.critical("cannot start: %s", exc)
        raise
    except SQLAlchemyError as exc:
        db.dispose()
        # The kind only: a driver message can quote stored values.
        log.critical("cannot start: the database failed (%s)", type(exc).__name__)
        raise StartupError(f"database failed at start-up ({type(exc).__name__})") from None
    batcher = Batcher(
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_tokens=settings.max_queue_tokens,
        max_request_tokens=settings.request_token_limit,
        retry_after_s=settings.retry_after_s,
        metrics=metrics,
    )
    batcher.start()
    engine = EmbeddingEngine(runtime, batcher, settings, metrics)
    log.info("serving %s (dim %d)", row.ref, runtime.manifest.embedding_dim)
    switcher = ModelSwitcher(registry, engine, settings, indexes, store)
    notes = NoteService(store, indexes, engine)
    metrics.index_snapshot_failing.set_function(lambda: float(indexes.snapshot_failing()))
    security = SecurityContext(settings.auth_enabled, KeyStore(db), QuotaLimiter())
    if not security.enabled:
        log.warning(
            "AUTH IS OFF: no API key is needed. Allowed only because the service binds to "
            "loopback (%s); set NOTESPACE_AUTH=on for anything but a local trial",
            settings.host,
        )
    audit = AuditLog(db)
    audit.start()
    return Resources(db, registry, engine, batcher, switcher, indexes, notes, security, audit)


def create_app(settings: Settings) -> FastAPI:
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redact_access_log()  # whichever server hosts the app, its access log holds no keys
        res = await run_in_threadpool(build_resources, settings, metrics)
        follower = asyncio.create_task(res.switcher.follow_registry())
        try:
            yield {
                "settings": settings,
                "metrics": metrics,
                "engine": res.engine,
                "registry": res.registry,
                "switcher": res.switcher,
                "notes": res.notes,
                "security": res.security,
                "audit_log": res.audit,
            }
        finally:
            follower.cancel()
            await run_in_threadpool(res.audit.stop)
            await run_in_threadpool(res.batcher.stop)
            await run_in_threadpool(res.indexes.close)  # checkpoint: a faster next start
            res.db.dispose()

    app = FastAPI(
        title="notespace",
        version="0.1.0",
        summary="Clinical-note embeddings, note search and note categories, on premise.",
        lifespan=lifespan,
        # No OpenTelemetry export: request bodies are patient data.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # Served by service.api.docs, open or behind a key (NOTESPACE_API_DOCS).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Before every route's own dependencies: no text with NUL or lone surrogates, no
        # non-finite or over-64-bit number reaches a handler.
        dependencies=[Depends(enforce_input_rules)],
    )
    install_error_handlers(app)
    install_api_docs(app, settings)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(LastResortMiddleware)  # outermost: nothing escapes to the server
    # Scopes per router; the notes and health routers set theirs per route.
    app.include_router(embed.router, dependencies=[Depends(require(KeyScope.EMBED))])
    app.include_router(classify.router, dependencies=[Depends(require(KeyScope.CLASSIFY))])
    app.include_router(openai_compat.router, dependencies=[Depends(require(KeyScope.EMBED))])
    app.include_router(models.router, dependencies=[Depends(require(KeyScope.ADMIN))])
    app.include_router(notes.router)
    app.include_router(health.router)
    return app
