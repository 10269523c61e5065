"""The server's access log carries no secrets: query-string values are masked (an `?api_key=`
is refused, but the line would still record it) and so is anything shaped like an API key,
wherever it appears in the logged URL."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_KEY = re.compile(r"ns_([a-z0-9]{10})_[A-Za-z0-9_-]{20,}")
_QUERY_VALUE = re.compile(r"=[^&#]*")


def redact_url(url: str) -> str:
    """`/path?a=1&b` → `/path?a=***&b`; an API key keeps only its public key id."""
    path, mark, query = url.partition("?")
    if mark:
        query = _QUERY_VALUE.sub("=***", query)
    return _KEY.sub(r"ns_\1_***", path + mark + query)


class AccessLogRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def redact_access_log(logger_name: str = ACCESS_LOGGER) -> None:
    """Install the filter on the server's access logger once (idempotent)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, AccessLogRedaction) for f in logger.filters):
        logger.addFilter(AccessLogRedaction())
