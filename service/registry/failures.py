"""What a database failure means for the caller: a domain error with a status and a code.

Only the kind of failure crosses this line, never the statement, its parameters or the driver's
message: PostgreSQL and SQLite messages can quote the values of a row (a unique key, a JSON
fragment, a cast that failed), and those values are note ids, metadata and note text.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from service.errors import (
    Conflict,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    NotespaceError,
    StorageFull,
    ValueRejectedByDatabase,
)


@dataclass(frozen=True)
class DatabaseFailure:
    """A classified failure: the error to answer with and a content-free label for the log."""

    error: NotespaceError
    label: str  # e.g. "OperationalError SQLITE_FULL" or "OperationalError sqlstate 08006"


# SQLite result codes (extended names share the primary name as a prefix).
_SQLITE = {
    "SQLITE_FULL": "full",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_IOERR": "unavailable",
    "SQLITE_READONLY": "unavailable",
    "SQLITE_CANTOPEN": "unavailable",
    "SQLITE_NOTADB": "unavailable",
    "SQLITE_CORRUPT": "unavailable",
    "SQLITE_PROTOCOL": "unavailable",
    "SQLITE_NOLFS": "unavailable",
    "SQLITE_CONSTRAINT": "conflict",
    "SQLITE_TOOBIG": "value",
    "SQLITE_MISMATCH": "value",
    "SQLITE_RANGE": "value",
}
# PostgreSQL SQLSTATEs: exact codes first, then their two-character classes.
_SQLSTATE = {
    "53100": "full",  # disk_full
    "57014": "busy",  # query_canceled (statement_timeout)
    "55P03": "busy",  # lock_not_available
    "40001": "busy",  # serialization_failure
    "40P01": "busy",  # deadlock_detected
    "25006": "unavailable",  # read_only_sql_transaction (a standby)
    "57P01": "unavailable",  # admin_shutdown
    "57P02": "unavailable",  # crash_shutdown
    "57P03": "unavailable",  # cannot_connect_now
    "08": "unavailable",  # connection exception
    "53": "unavailable",  # insufficient resources (memory, connections)
    "58": "unavailable",  # system error (I/O)
    "23": "conflict",  # integrity constraint violation
    "22": "value",  # data exception (a value the database cannot store or compare)
}


def classify(error: sa_exc.SQLAlchemyError, *, retry_after_s: int) -> DatabaseFailure:
    """Map a database error to what the client is told; never reads the error's message."""
    orig = getattr(error, "orig", None)
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    sqlstate = getattr(orig, "sqlstate", None)
    kind: str | None = None
    detail = ""
    if isinstance(sqlite_name, str):
        detail = sqlite_name
        kind = next((k for name, k in _SQLITE.items() if sqlite_name.startswith(name)), None)
    elif isinstance(sqlstate, str):
        detail = f"sqlstate {sqlstate}"
        kind = _SQLSTATE.get(sqlstate) or _SQLSTATE.get(sqlstate[:2])
    if kind is None:
        if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
            kind = "busy"
        elif isinstance(error, sa_exc.IntegrityError):
            kind = "conflict"
        elif isinstance(error, sa_exc.DataError):
            kind = "value"
        elif isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or (
            isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
        ):
            kind = "unavailable"  # e.g. connection refused: no server message, no SQLSTATE
    label = f"{type(orig or error).__name__}{f' {detail}' if detail else ''}"
    return DatabaseFailure(_error(kind, retry_after_s), label)


def _error(kind: str | None, retry_after_s: int) -> NotespaceError:
    if kind == "full":
        return StorageFull(
            "the database's storage is full; this request was not completed: "
            "retry once space has been freed",
            retry_after_s=retry_after_s,
        )
    if kind == "busy":
        return DatabaseBusy(
            "the database is busy; this request was not completed: retry shortly",
            retry_after_s=retry_after_s,
        )
    if kind == "unavailable":
        return DatabaseUnavailable(
            "the database is unavailable; this request was not completed: retry shortly",
            retry_after_s=retry_after_s,
        )
    if kind == "conflict":
        return Conflict(
            "this request conflicted with a concurrent change and was not completed: retry"
        )
    if kind == "value":
        return ValueRejectedByDatabase(
            "a value in this request cannot be stored or compared by the database"
        )
    return DatabaseError("the database failed to run this request")
