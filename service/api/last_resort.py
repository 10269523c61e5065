"""The last line of error handling: whatever escapes every handler becomes a 500 with the usual
error body, and the log records the exception's type and a request id, nothing else.

Nothing propagates to the server, so the server never prints a traceback (whose exception
message could quote note text, e.g. a driver error with the statement's parameters) and never
drops the client's keep-alive connection. Every response names its request id in
`X-Request-Id`, so a client's report can be matched with the one log line.
"""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(scope: Scope) -> str:
    """The id this middleware gave the request ("-" outside an HTTP request)."""
    state = scope.get("state") or {}
    return str(state.get("request_id", "-"))


class LastResortMiddleware:
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
            route = scope.get("route")
            log.error(
                "unhandled %s.%s in %s %s (request %s)",
                type(exc).__module__,
                type(exc).__qualname__,
                scope.get("method", "-"),
                getattr(route, "path", None) or "unmatched route",
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
