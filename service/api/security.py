"""Authentication, scopes, quotas and audit details, as route dependencies and one middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.responses import StatusCapture
from service.audit import (
    ACTING_USER_HEADER,
    AuditLog,
    AuditRecord,
    recorded_acting_user,
    valid_acting_user,
)
from service.errors import BadRequest, Forbidden, Unauthorized
from service.security import (
    ANONYMOUS,
    KeyScope,
    KeyStore,
    Principal,
    QuotaLimiter,
    presented_key,
)

# Not audited: liveness/readiness probes and metric scrapes would drown the trail.
UNAUDITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


@dataclass(frozen=True)
class SecurityContext:
    enabled: bool
    keys: KeyStore
    quotas: QuotaLimiter


def require(scope: KeyScope | None) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: a valid key (when auth is on) holding `scope` (None: any valid key)."""

    async def dependency(request: Request) -> Principal:
        context: SecurityContext = request.state.security
        acting_user(request)  # validate the header early, whatever the outcome
        if not context.enabled:
            principal = ANONYMOUS
        else:
            token = presented_key(
                request.headers.getlist("authorization"), request.headers.getlist("x-api-key")
            )
            if token is None:
                raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
            principal = await run_in_threadpool(context.keys.authenticate, token)
        request.state.principal = principal
        if scope is not None:
            require_scope(request, scope)
        context.quotas.admit(principal)
        return principal

    return dependency


def require_scope(request: Request, scope: KeyScope) -> None:
    """For a capability asked for inside a request (e.g. categories on /embed)."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    if scope.value not in principal.scopes:
        raise Forbidden(f"this key lacks the '{scope.value}' scope")


def acting_user(request: Request) -> str | None:
    try:
        return valid_acting_user(request.headers.getlist(ACTING_USER_HEADER))
    except ValueError as exc:
        raise BadRequest(str(exc), param="X-Acting-User") from None


def audit_details(
    request: Request,
    *,
    items: int | None = None,
    model: str | None = None,
    note_ids: list[str] | None = None,
    tokens: int | None = None,
) -> None:
    """What the audit entry records about this request (counts and ids, never text)."""
    request.state.audit = {"item_count": items, "model_ref": model, "note_ids": note_ids}
    if tokens:
        context: SecurityContext = request.state.security
        principal: Principal = getattr(request.state, "principal", ANONYMOUS)
        context.quotas.charge_tokens(principal, tokens)


class AuditMiddleware:
    """After each response, queue one audit entry built from the request's state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        capture = StatusCapture(send)
        try:
            await self.app(scope, receive, capture)
        finally:
            await self._record(scope, capture.status)

    @staticmethod
    async def _record(scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        log: AuditLog | None = state.get("audit_log")
        if log is None:
            return
        principal: Principal | None = state.get("principal")
        route = scope.get("route")
        # The same reading and rule as the route's check (service.api.security.acting_user).
        user = recorded_acting_user(Headers(scope=scope).getlist(ACTING_USER_HEADER))
        client = scope.get("client")
        details = state.get("audit") or {}
        entry = AuditRecord(
            action=getattr(route, "name", None) or "unmatched",
            status=status,
            key_id=principal.key_id if principal else None,
            key_name=principal.name if principal else None,
            acting_user=user,
            client=str(client[0])[:64] if client else None,
            **details,
        )
        await run_in_threadpool(log.record, entry)
