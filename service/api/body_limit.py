"""Rejects request bodies over the limit before they are buffered, with the JSON error body."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            response = error_response(
                413,
                type_="invalid_request_error",
                code="too_large",
                message=f"request body is larger than {self.max_body_bytes} bytes",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Chunked bodies carry no length: count as they stream in and stop at the limit.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, counting_receive, send)
