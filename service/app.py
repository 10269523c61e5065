"""create_app(settings): the FastAPI application. It only wires: the lifespan runs the service
(service.orchestration.resources), the middleware and routers come from service.api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from service.api import classify, embed, health, models, notes, openai_compat
from service.api.access import require
from service.api.access_log import redact_access_log
from service.api.deps import API_STATE, ApiState
from service.api.docs import install_api_docs
from service.api.errors import error_responses, install_error_handlers
from service.api.input_rules import enforce_input_rules
from service.api.middleware import (
    AuditMiddleware,
    BodyLimitMiddleware,
    LastResortMiddleware,
    RequestMetricsMiddleware,
)
from service.api.quotas import quota_limiter
from service.metrics import ServiceMetrics
from service.orchestration.access import KeyScope
from service.orchestration.resources import running_service
from service.settings import Settings

# Every route that needs a key may also answer these.
ACCESS_ERRORS = error_responses(401, 403, 429)


def create_app(settings: Settings) -> FastAPI:
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redact_access_log()  # whichever server hosts the app, its access log holds no keys
        async with running_service(settings, metrics) as resources:
            yield {API_STATE: ApiState(resources, quota_limiter(resources))}

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
    for router, scope in (
        (embed.router, KeyScope.EMBED),
        (classify.router, KeyScope.CLASSIFY),
        (openai_compat.router, KeyScope.EMBED),
        (models.router, KeyScope.ADMIN),
    ):
        app.include_router(router, dependencies=[Depends(require(scope))], responses=ACCESS_ERRORS)
    app.include_router(notes.router, responses=ACCESS_ERRORS)
    app.include_router(health.router)
    return app
