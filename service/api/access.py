"""Who is calling and what they may do: the credential headers, scopes, quotas, the acting
user, and what the audit entry records about the call. Route dependencies only; the entry
itself is written by service.api.middleware.AuditMiddleware."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.api.deps import ApiState, StateDep
from service.errors import BadRequest, ConflictingCredentials, Forbidden, Unauthorized
from service.orchestration.access import ANONYMOUS, KeyScope, Principal

ACTING_USER_HEADER = "x-acting-user"
MAX_ACTING_USER_CHARS = 256
# Per-request state the audit middleware reads after the response.
PRINCIPAL_STATE = "principal"
AUDIT_STATE = "audit"


def presented_key(authorizations: Sequence[str], api_keys: Sequence[str]) -> str | None:
    """The one key a request presents, from every `Authorization` and `X-API-Key` header.

    Each header sent must be well formed (a malformed one is refused even beside a valid
    one), and all must carry the same key: a request never gets to choose between two.
    """
    keys: list[str] = []
    for value in authorizations:
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <key>'")
        keys.append(token.strip())
    for value in api_keys:
        if not value.strip():
            raise Unauthorized("X-API-Key header is empty")
        keys.append(value.strip())
    if not keys:
        return None
    first = keys[0].encode()  # bytes: compare_digest refuses non-ASCII str
    if any(not hmac.compare_digest(first, other.encode()) for other in keys[1:]):
        raise ConflictingCredentials(
            "the request carries different keys (Authorization, X-API-Key); send exactly one"
        )
    return keys[0]


def valid_acting_user(values: Sequence[str]) -> str | None:
    """The person a request acts for: at most one `X-Acting-User`, of 1-256 printable
    characters. Raises ValueError otherwise."""
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("at most one X-Acting-User header")
    value = values[0]
    if not 0 < len(value) <= MAX_ACTING_USER_CHARS or not value.isprintable():
        raise ValueError(f"X-Acting-User must be 1-{MAX_ACTING_USER_CHARS} printable characters")
    return value


def recorded_acting_user(values: Sequence[str]) -> str | None:
    """What the trail stores: a valid value as sent; a refused one only as a fingerprint, so
    the refusal is traceable but what was sent is not stored verbatim."""
    try:
        return valid_acting_user(values)
    except ValueError:
        raw = "\n".join(values).encode("utf-8", "surrogatepass")
        return f"(refused; sha256 {hashlib.sha256(raw).hexdigest()[:16]})"


def acting_user(request: Request) -> str | None:
    try:
        return valid_acting_user(request.headers.getlist(ACTING_USER_HEADER))
    except ValueError as exc:
        raise BadRequest(str(exc), param="X-Acting-User") from None


def require(scope: KeyScope | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a valid key (when auth is on) holding `scope` (None: any valid key)."""

    async def dependency(request: Request, state: StateDep) -> Principal:
        access = state.resources.access
        acting_user(request)  # validate the header early, whatever the outcome
        if not access.enabled:
            principal = ANONYMOUS
        else:
            token = presented_key(
                request.headers.getlist("authorization"), request.headers.getlist("x-api-key")
            )
            if token is None:
                raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
            principal = await access.authenticate(token)
        setattr(request.state, PRINCIPAL_STATE, principal)
        if scope is not None:
            _check_scope(principal, scope)
        await state.quotas.admit(principal)
        return principal

    return dependency


def _check_scope(principal: Principal, scope: KeyScope) -> None:
    if scope.value not in principal.scopes:
        raise Forbidden(f"this key lacks the '{scope.value}' scope")


@dataclass(frozen=True)
class Call:
    """One authenticated call: who makes it, for whom, and what its audit entry records."""

    request: Request
    state: ApiState

    @property
    def principal(self) -> Principal:
        principal: Principal = getattr(self.request.state, PRINCIPAL_STATE, ANONYMOUS)
        return principal

    def require_scope(self, scope: KeyScope) -> None:
        """For a capability asked for inside a request (e.g. categories on /embed)."""
        _check_scope(self.principal, scope)

    def requester(self) -> str:
        """Who asks, for a promotion record: the acting user and the key, never the key."""
        principal = self.principal
        key = (
            f"key {principal.name} ({principal.key_id})"
            if principal.key_id
            else "no key (auth off)"
        )
        user = acting_user(self.request)
        return f"{user} via HTTP, {key}" if user else f"HTTP, {key}"

    def audit(
        self,
        *,
        items: int | None = None,
        model: str | None = None,
        note_ids: list[str] | None = None,
    ) -> None:
        """What the audit entry records about this call (counts and ids, never text)."""
        details = {"item_count": items, "model_ref": model, "note_ids": note_ids}
        setattr(self.request.state, AUDIT_STATE, details)

    async def charge_tokens(self, tokens: int) -> None:
        """Charge the tokens embedded to the key's quota."""
        if tokens:
            await self.state.quotas.charge_tokens(self.principal, tokens)


def _call(request: Request, state: StateDep) -> Call:
    return Call(request, state)


CallDep = Annotated[Call, Depends(_call)]
