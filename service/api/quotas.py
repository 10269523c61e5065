"""Per-key request and token quotas (429 with Retry-After): which limiter counts them.

On PostgreSQL (NOTESPACE_QUOTA_STORE=auto or database) the budgets live in the database and
every replica shares them (orchestration/quotas.py); on SQLite, a single box, they are counted
in this process (`ProcessQuotaLimiter`).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from service.errors import QuotaExceeded
from service.orchestration.access import Principal
from service.orchestration.resources import Resources


class _Bucket:
    """Token bucket refilled continuously at capacity per minute; may go into debt."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate_per_s = per_minute / 60.0
        self.updated = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def wait_s(self, needed: float) -> int:
        return max(1, math.ceil((needed - self.level) / self.rate_per_s))


class QuotaLimiter(Protocol):
    async def admit(self, principal: Principal) -> None:
        """Take one request from the key's budget, or raise QuotaExceeded."""

    async def charge_tokens(self, principal: Principal, tokens: int) -> None:
        """Charge the tokens a request embedded (the budget may go into debt)."""


def quota_limiter(resources: Resources) -> QuotaLimiter:
    """The shared limiter when the service counts quotas in the database, else this process's."""
    shared = resources.shared_quotas
    return shared if shared is not None else ProcessQuotaLimiter()


class ProcessQuotaLimiter:
    """Token buckets in this process's memory: a single box (SQLite) only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    async def admit(self, principal: Principal) -> None:
        """Take one request from the key's budget; refuse while its token budget is in debt."""
        if principal.key_id is None:
            return
        with self._lock:
            if principal.requests_per_minute:
                bucket = self._bucket(
                    self._requests, principal.key_id, principal.requests_per_minute
                )
                if bucket.level < 1:
                    raise QuotaExceeded(
                        f"key over its quota of {principal.requests_per_minute} requests/minute",
                        retry_after_s=bucket.wait_s(1),
                    )
                bucket.level -= 1
            if principal.tokens_per_minute:
                bucket = self._bucket(self._tokens, principal.key_id, principal.tokens_per_minute)
                if bucket.level <= 0:
                    raise QuotaExceeded(
                        f"key over its quota of {principal.tokens_per_minute} tokens/minute",
                        retry_after_s=bucket.wait_s(1),
                    )

    async def charge_tokens(self, principal: Principal, tokens: int) -> None:
        if principal.key_id is None or not principal.tokens_per_minute:
            return
        with self._lock:
            bucket = self._bucket(self._tokens, principal.key_id, principal.tokens_per_minute)
            bucket.level -= tokens

    @staticmethod
    def _bucket(buckets: dict[str, _Bucket], key_id: str, per_minute: int) -> _Bucket:
        bucket = buckets.get(key_id)
        if bucket is None or bucket.capacity != per_minute:
            bucket = buckets[key_id] = _Bucket(per_minute)
        bucket.refill()
        return bucket
