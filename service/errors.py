"""Every domain error the service answers with, each carrying its HTTP status, type and code.

This module is the one error table: `service.api.errors` turns any of these into the usual body
`{"error": {"type", "code", "message", "param"}}` with one handler, and builds each route's
OpenAPI `responses=` from the same classes (`error_table`). Messages name fields and limits,
never note text, query text or vectors.
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


# -- 400: the request itself is wrong ---------------------------------------------------------
class BadRequest(NotespaceError):
    status = 400
    code = "bad_request"
    type = "invalid_request_error"


class EmptyInput(BadRequest):
    code = "empty_input"


class InvalidText(BadRequest):
    """Text holding a NUL or an unpaired UTF-16 surrogate (service.api.input_rules)."""

    code = "invalid_text"


class InvalidNumber(BadRequest):
    """A non-finite number, or an integer beyond 64 bits (service.api.input_rules)."""

    code = "invalid_number"


class ValueRejectedByDatabase(BadRequest):
    code = "invalid_value"


# -- 401 / 403 / 429: who asks, and how much ---------------------------------------------------
class Unauthorized(NotespaceError):
    status = 401
    code = "unauthorized"
    type = "authentication_error"


class ConflictingCredentials(Unauthorized):
    code = "conflicting_credentials"


class Forbidden(NotespaceError):
    status = 403
    code = "forbidden"
    type = "permission_error"


class QuotaExceeded(NotespaceError):
    status = 429
    code = "quota_exceeded"
    type = "rate_limit_error"


# -- 404 ---------------------------------------------------------------------------------------
class NotFound(NotespaceError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


# -- 409: the request conflicts with the state of the registry or the notes ---------------------
class Conflict(NotespaceError):
    """A concurrent change, a retired or serving version, a bundle registered twice."""

    status = 409
    code = "conflict"
    type = "invalid_request_error"


class ModelLoadFailed(Conflict):
    code = "model_load_failed"


class NoCategoryHead(Conflict):
    """The serving model version has no note-category head."""

    code = "no_category_head"


class PromotionRefused(Conflict):
    """The promotion guard refused a promotion; `--force-regression` overrides it."""

    code = "promotion_refused"


class PromotionRegression(PromotionRefused):
    code = "promotion_regression"


class PromotionUnverified(PromotionRefused):
    """Suite results are required (NOTESPACE_PROMOTION_REQUIRES_EVAL) but none compare."""

    code = "promotion_unverified"


# -- 422: well-formed, but not what this service takes ------------------------------------------
class Unprocessable(NotespaceError):
    status = 422
    code = "validation_error"
    type = "invalid_request_error"


class TokenIdsUnsupported(Unprocessable):
    """OpenAI-style token-id input: ids of another tokenizer mean nothing to this model."""

    code = "token_ids_unsupported"


# -- 413: over a static limit (never for load) ----------------------------------------------------
class PayloadTooLarge(NotespaceError):
    status = 413
    code = "too_large"
    type = "invalid_request_error"


class NoteTooLong(PayloadTooLarge):
    code = "note_too_long"


class MetadataTooLarge(PayloadTooLarge):
    code = "metadata_too_large"


# -- 500: a failure of ours (logged by kind, never by content) ------------------------------------
class InferenceFailed(NotespaceError):
    code = "inference_failed"


class DatabaseError(NotespaceError):
    code = "database_error"


# -- 503: retry after `retry_after_s` ----------------------------------------------------------
class Unavailable(NotespaceError):
    status = 503
    type = "unavailable"
    code = "unavailable"


class Overloaded(Unavailable):
    code = "overloaded"


class DeadlineExceeded(Unavailable):
    code = "deadline_exceeded"


class NotReady(Unavailable):
    code = "not_ready"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class StorageFull(Unavailable):
    code = "storage_full"


class DatabaseBusy(Unavailable):
    code = "database_busy"


def error_table() -> list[type[NotespaceError]]:
    """Every error class, in declaration order (the API docs list their codes per status)."""
    found: list[type[NotespaceError]] = []
    pending: list[type[NotespaceError]] = [NotespaceError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
