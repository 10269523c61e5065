"""The app's middleware, outermost first: last resort (request id, 500 for anything that
escapes), request metrics, body limits, audit; and the status capture they share.

* LastResortMiddleware: whatever escapes every handler becomes a 500 with the usual error body,
  and the log records the exception's type and a request id, nothing else. Nothing propagates
  to the server, so the server never prints a traceback (whose exception message could quote
  note text, e.g. a driver error with the statement's parameters) and never drops the client's
  keep-alive connection. Every response names its request id in `X-Request-Id`, so a client's
  report can be matched with the one log line.
* RequestMetricsMiddleware: requests by route *template* (never the raw path) and status.
* BodyLimitMiddleware: bodies are refused over the size limit before they are buffered, and
  refused when they do not arrive in time (a stalled body would otherwise hold its request open
  forever); both with the JSON error body, and the connection is closed after the answer.
* AuditMiddleware: after each response, one audit entry built from the call's state (who, what,
  how much; never text).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.access import (
    ACTING_USER_HEADER,
    AUDIT_STATE,
    PRINCIPAL_STATE,
    recorded_acting_user,
)
from service.api.deps import API_STATE, ApiState
from service.api.errors import error_response
from service.metrics import ServiceMetrics
from service.orchestration.access import Principal
from service.orchestration.audit import AuditRecord

log = logging.getLogger(__name__)

# Not audited: liveness/readiness probes and metric scrapes would drown the trail.
UNAUDITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


class StatusCapture:
    """Wraps an ASGI `send` to remember the response status (500 if none was sent)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/notes/{note_id:path}`), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(scope: Scope) -> str:
    """The id this middleware gave the request ("-" outside an HTTP request)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", "-"))


class LastResortMiddleware:
    """Outermost: nothing escapes to the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Ours, never the client's: a client-chosen id could carry an identifier into the log.
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - the last resort: every exception, by design
            log.error(
                "unhandled %s.%s in %s %s (request %s)",
                type(exc).__module__,
                type(exc).__qualname__,
                scope.get("method", "-"),
                route_template(scope),
                request_id,
            )
            if not started:
                response = error_response(
                    500,
                    type_="server_error",
                    code="internal_error",
                    message=f"internal error (request {request_id})",
                )
                await response(scope, receive, send_with_id)


class RequestMetricsMiddleware:
    """Counts requests by route template and status, and times them."""

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
            template = route_template(scope)
            self.metrics.requests.labels(template, str(capture.status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_read_timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_s = body_read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_body_bytes
        ):
            response = error_response(
                413,
                type_="invalid_request_error",
                code="too_large",
                message=f"request body is larger than {self.max_body_bytes} bytes",
                close=True,
            )
            await response(scope, receive, send)
            return
        received = 0
        deadline: float | None = None
        complete = False

        async def guarded_receive() -> Message:
            # Chunked bodies carry no length: count as they stream in and stop at the limit.
            # The whole body must arrive within the timeout of the first read; after it, a
            # read only waits for the client to disconnect, which has no deadline.
            nonlocal received, deadline, complete
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_read_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise HTTPException(408) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)


class AuditMiddleware:
    """After each response, queue one audit entry built from the call's state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        capture = StatusCapture(send)
        try:
            await self.app(scope, receive, capture)
        finally:
            await self._record(scope, capture.status)

    @staticmethod
    async def _record(scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        api: ApiState | None = state.get(API_STATE)
        if api is None:
            return
        principal: Principal | None = state.get(PRINCIPAL_STATE)
        route = scope.get("route")
        # The same reading and rule as the route's check (service.api.access.acting_user).
        user = recorded_acting_user(Headers(scope=scope).getlist(ACTING_USER_HEADER))
        client = scope.get("client")
        details = state.get(AUDIT_STATE) or {}
        entry = AuditRecord(
            action=getattr(route, "name", None) or "unmatched",
            status=status,
            key_id=principal.key_id if principal else None,
            key_name=principal.name if principal else None,
            acting_user=user,
            client=str(client[0])[:64] if client else None,
            **details,
        )
        await run_in_threadpool(api.resources.audit.record, entry)
