"""Per-key quotas shared by every replica: the key's request and token budgets live in the
database (registry/quota_state.py), so N requests/minute means N across all replicas."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from service.errors import QuotaExceeded
from service.orchestration.access import Principal
from service.registry.quota_state import QuotaKind, QuotaState

__all__ = ["SharedQuotas"]


class SharedQuotas:
    """The same answers as the in-process limiter (api/quotas.py), counted in PostgreSQL."""

    def __init__(self, state: QuotaState) -> None:
        self._state = state

    async def admit(self, principal: Principal) -> None:
        """Take one request from the key's budget; refuse while its token budget is in debt."""
        key_id = principal.key_id
        if key_id is None:
            return
        if principal.requests_per_minute:
            per_minute = principal.requests_per_minute
            wait_s = await run_in_threadpool(
                self._state.take, key_id, QuotaKind.REQUESTS, 1, per_minute
            )
            if wait_s is not None:
                raise QuotaExceeded(
                    f"key over its quota of {per_minute} requests/minute", retry_after_s=wait_s
                )
        if principal.tokens_per_minute:
            per_minute = principal.tokens_per_minute
            wait_s = await run_in_threadpool(
                self._state.empty_for, key_id, QuotaKind.TOKENS, per_minute
            )
            if wait_s is not None:
                raise QuotaExceeded(
                    f"key over its quota of {per_minute} tokens/minute", retry_after_s=wait_s
                )

    async def charge_tokens(self, principal: Principal, tokens: int) -> None:
        if principal.key_id is None or not principal.tokens_per_minute:
            return
        await run_in_threadpool(
            self._state.charge,
            principal.key_id,
            QuotaKind.TOKENS,
            tokens,
            principal.tokens_per_minute,
        )
