"""Request bodies: refused over the size limit before they are buffered, and refused when they
do not arrive in time (a stalled body would otherwise hold its request open forever); both
with the JSON error body, and the connection is closed after the answer."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response


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
