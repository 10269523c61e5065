"""Domain errors: each carries its HTTP status; one handler turns them into responses.

Messages name fields and limits, never note text, query text or vectors.
"""

from __future__ import annotations


class NotespaceError(Exception):
    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(
        self, message: str, *, param: str | None = None, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


class BadRequest(NotespaceError):
    status = 400
    code = "bad_request"
    type = "invalid_request_error"


class EmptyInput(BadRequest):
    code = "empty_input"


class PayloadTooLarge(NotespaceError):
    status = 413
    code = "too_large"
    type = "invalid_request_error"


class NoteTooLong(PayloadTooLarge):
    code = "note_too_long"


class NotFound(NotespaceError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class Unavailable(NotespaceError):
    """503: the caller should retry after `retry_after_s`."""

    status = 503
    type = "unavailable"
    code = "unavailable"


class Overloaded(Unavailable):
    code = "overloaded"


class DeadlineExceeded(Unavailable):
    code = "deadline_exceeded"


class NotReady(Unavailable):
    code = "not_ready"


class InferenceFailed(NotespaceError):
    code = "inference_failed"
