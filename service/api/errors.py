"""The one place errors become HTTP responses. Bodies name fields, never echo input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.api.responses import FastJSONResponse
from service.errors import NotespaceError

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


def error_response(
    status: int,
    *,
    type_: str,
    code: str,
    message: str,
    param: str | None = None,
    retry_after_s: int | None = None,
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return FastJSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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
        413: "request body is larger than the service accepts",
    }.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, type_=type_, code=code, message=message)


async def _unexpected_error(_: Request, exc: Exception) -> Response:
    # Only the exception type is logged: a message could carry request content.
    log.error("unhandled %s", type(exc).__name__)
    return error_response(
        500, type_="server_error", code="internal_error", message="internal error"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotespaceError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
