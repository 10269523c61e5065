"""create_app(settings): the FastAPI application, its lifespan and middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import embed, health, openai_compat
from service.api.body_limit import BodyLimitMiddleware
from service.api.errors import install_error_handlers
from service.bundle import load_bundle
from service.inference.batcher import Batcher
from service.inference.engine import EmbeddingEngine, ModelRuntime
from service.metrics import ServiceMetrics
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
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - started)


def build_engine(settings: Settings, metrics: ServiceMetrics) -> tuple[EmbeddingEngine, Batcher]:
    """Load and warm the bundle, start the inference thread."""
    bundle = load_bundle(settings.bundle_path)
    runtime = ModelRuntime.load(bundle, settings)
    if settings.warmup:
        runtime.warm_up()
    batcher = Batcher(
        max_batch_tokens=settings.max_batch_tokens,
        max_queue_tokens=settings.max_queue_tokens,
        retry_after_s=settings.retry_after_s,
        metrics=metrics,
    )
    batcher.start()
    log.info("serving %s (dim %d)", bundle.manifest.ref, bundle.manifest.embedding_dim)
    return EmbeddingEngine(runtime, batcher, settings, metrics), batcher


def create_app(settings: Settings) -> FastAPI:
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine, batcher = await run_in_threadpool(build_engine, settings, metrics)
        try:
            yield {"settings": settings, "metrics": metrics, "engine": engine}
        finally:
            await run_in_threadpool(batcher.stop)

    app = FastAPI(
        title="notespace",
        version="0.1.0",
        summary="Clinical-note embeddings, note search and note categories, on premise.",
        lifespan=lifespan,
        # No OpenTelemetry export: request bodies are patient data.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    for router in (embed.router, openai_compat.router, health.router):
        app.include_router(router)
    return app
