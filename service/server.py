"""The HTTP server around the app: uvicorn, with a deadline for every request's headers.

uvicorn bounds how long an idle keep-alive connection stays open, but not how long a client may
take to send a request's headers: a connection that sends nothing, or one byte at a time, is
held forever (slowloris). Here the headers must be complete within `header_read_timeout_s` of
the connection opening or of the previous response; otherwise the server answers 408 (if any
byte arrived) and closes the connection. The body's own deadline is the app's
(service.api.body_limit), so it holds under any ASGI server.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings

_TIMEOUT_BODY = (
    b'{"error": {"type": "invalid_request_error", "code": "request_timeout", '
    b'"message": "the request headers did not arrive in time", "param": null}}'
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
    + _TIMEOUT_BODY
)


class _HeaderDeadline:
    """Mixin for uvicorn's HTTP protocols: arms a timer while the connection waits for a
    request's headers; a new request cycle (headers complete) disarms it."""

    header_timeout_s: float = 10.0
    # Provided by the uvicorn protocol this is mixed into:
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    _deadline: asyncio.TimerHandle | None = None
    _waiting_cycle: Any = None
    _bytes_while_waiting = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._bytes_while_waiting += len(data)
        super().data_received(data)  # type: ignore[misc]
        if self._deadline is not None and self.cycle is not self._waiting_cycle:
            self._disarm()  # the headers are complete: a request is in progress

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self.cycle is None or self.cycle.response_complete:  # nothing pipelined started
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        self._waiting_cycle = self.cycle
        self._bytes_while_waiting = 0
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.cycle is not self._waiting_cycle or self.transport.is_closing():
            return
        if self._bytes_while_waiting:  # a request had started: tell the client why
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


class H11WithHeaderDeadline(_HeaderDeadline, H11Protocol):
    pass


def _base_protocol() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extra
        return H11WithHeaderDeadline

    class HttpToolsWithHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
        pass

    return HttpToolsWithHeaderDeadline


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's fastest available HTTP/1.1 protocol, with the header deadline."""
    base = _base_protocol()
    return cast(
        "type[asyncio.Protocol]",
        type(base.__name__, (base,), {"header_timeout_s": timeout_s}),
    )


def server_config(app: Any, settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=header_deadline_protocol(settings.header_read_timeout_s),
        timeout_graceful_shutdown=10,
    )
