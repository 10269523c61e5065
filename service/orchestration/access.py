"""Who is calling: a key's principal (scopes, quotas), or nobody when auth is off."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from service.registry.keys import KeyScope, KeyStore

__all__ = ["ANONYMOUS", "Authenticator", "KeyScope", "Principal"]


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: a key, or nobody when auth is off."""

    key_id: str | None
    name: str | None
    scopes: frozenset[str]
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


ANONYMOUS = Principal(key_id=None, name=None, scopes=frozenset(KeyScope))


class Authenticator:
    """Keys are checked against the database on every request, so a revocation applies to the
    very next one."""

    def __init__(self, keys: KeyStore, *, enabled: bool) -> None:
        self.enabled = enabled
        self._keys = keys

    async def authenticate(self, presented: str) -> Principal:
        row = await run_in_threadpool(self._keys.verify, presented)
        return Principal(
            key_id=row.key_id,
            name=row.name,
            scopes=frozenset(row.scopes.split(",")),
            requests_per_minute=row.requests_per_minute,
            tokens_per_minute=row.tokens_per_minute,
        )
