"""The one place errors become HTTP responses. Bodies name fields, never echo input."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.api.deps import API_STATE
from service.api.responses import FastJSONResponse
from service.api.schemas import ErrorResponse
from service.errors import NotespaceError, error_table
from service.orchestration.failures import classify

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI `responses=`, from the error table: per status, the error body and
    every code it may carry. 422 (validation, field path only) is FastAPI's own."""
    codes: dict[int, list[str]] = {}
    for cls in error_table():
        if cls.code not in codes.setdefault(cls.status, []):
            codes[cls.status].append(cls.code)
    if "validation_error" not in codes.setdefault(422, []):
        codes[422].insert(0, "validation_error")  # FastAPI's own, answered by _validation_error
    return {
        status: {"model": ErrorResponse, "description": "code: " + ", ".join(codes[status])}
        for status in sorted(statuses)
    }


def error_response(
    status: int,
    *,
    type_: str,
    code: str,
    message: str,
    param: str | None = None,
    retry_after_s: int | None = None,
    close: bool = False,
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    if close:  # the request was not read to its end: the connection cannot carry another
        headers["Connection"] = "close"
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return FastJSONResponse(body, status_code=status, headers=headers)


# Field names are identifiers; a location part that is not one is a client's metadata key,
# which is input and is not echoed.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if _FIELD_NAME.match(part) else "*"
        out += f".{name}" if out else name
    return out or "body"


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotespaceError)
    if exc.status >= 500 and exc.retry_after_s is None:
        log.error("request failed: %s", exc.code)
    return error_response(
        exc.status,
        type_=exc.type,
        code=exc.code,
        message=exc.message,
        param=exc.param,
        retry_after_s=exc.retry_after_s,
    )


async def _validation_error(_: Request, exc: Exception) -> Response:
    # FastAPI's default 422 echoes the offending input (note text): build our own body from
    # the error locations and types only.
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(
            400,
            type_="invalid_request_error",
            code="invalid_json",
            message="body is not valid JSON",
        )
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error_response(
            400, type_="invalid_request_error", code="empty_body", message="request body is empty"
        )
    first = errors[0]
    fields = sorted({_location(tuple(e.get("loc", ()))) for e in errors})
    message = f"invalid field(s): {', '.join(fields[:10])} ({first.get('type', 'invalid')})"
    return error_response(
        422,
        type_="invalid_request_error",
        code="validation_error",
        message=message,
        param=_location(tuple(first.get("loc", ()))),
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    type_, code = _STATUS_CODES.get(exc.status_code, ("invalid_request_error", "http_error"))
    message = {
        400: "request body could not be parsed (malformed or nested too deeply)",
        408: "the request body did not arrive in time",
        413: "request body is larger than the service accepts",
    }.get(exc.status_code, str(exc.detail))
    return error_response(
        exc.status_code,
        type_=type_,
        code=code,
        message=message,
        close=exc.status_code in (408, 413),
    )


async def _database_error(request: Request, exc: Exception) -> Response:
    # The failure's kind and a request id only: the driver's message can quote stored values.
    assert isinstance(exc, SQLAlchemyError)
    api = getattr(request.state, API_STATE, None)
    retry_after_s = api.resources.settings.database_retry_after_s if api is not None else 5
    failure = classify(exc, retry_after_s=retry_after_s)
    error = failure.error
    (log.error if error.status >= 500 else log.warning)(
        "database failure %s answered %d %s in %s %s (request %s)",
        failure.label,
        error.status,
        error.code,
        request.method,
        getattr(request.scope.get("route"), "path", None) or "unmatched",
        getattr(request.state, "request_id", "-"),
    )
    return error_response(
        error.status,
        type_=error.type,
        code=error.code,
        message=error.message,
        retry_after_s=error.retry_after_s,
    )


def install_error_handlers(app: FastAPI) -> None:
    # Anything else escapes to service.api.last_resort, which answers 500 and logs its type.
    app.add_exception_handler(NotespaceError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
