"""The API's own description (/openapi.json, /docs, /redoc), open, behind a key, or not served
(`NOTESPACE_API_DOCS`; with auth on it needs a key unless set to "open")."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse

from service.api.access import require
from service.api.responses import FastJSONResponse
from service.settings import Settings

OPENAPI_PATH = "/openapi.json"


def install_api_docs(app: FastAPI, settings: Settings) -> None:
    access = settings.api_docs_access
    if access == "off":
        return
    dependencies = [Depends(require(None))] if access == "key" else []

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=dependencies)
    async def openapi(request: Request) -> FastJSONResponse:
        schema: dict[str, Any] = request.app.openapi()
        return FastJSONResponse(schema)

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - API")

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=OPENAPI_PATH, title=f"{app.title} - API")
