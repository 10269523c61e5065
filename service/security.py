"""API keys with scopes: random, shown once, stored only as a sha256; per-key quotas.

A key reads `ns_<key_id>_<secret>`. The key id is public (it names the key in lists and audit
entries); the secret is 32 random bytes, so a plain sha256 is enough to store it safely.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, select

from service.errors import ConflictingCredentials, QuotaExceeded, Unauthorized
from service.registry.database import session_factory
from service.registry.tables import ApiKey, utcnow

_KEY_PATTERN = re.compile(r"^ns_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")


class KeyScope(StrEnum):
    EMBED = "embed"
    CLASSIFY = "classify"
    SEARCH = "search"
    INDEX = "index"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The caller behind a request: a key, or nobody when auth is off."""

    key_id: str | None
    name: str | None
    scopes: frozenset[str]
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


ANONYMOUS = Principal(key_id=None, name=None, scopes=frozenset(KeyScope))


@dataclass(frozen=True)
class CreatedKey:
    key: str  # shown once, never stored
    row: ApiKey


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = sorted({s.strip() for s in items if s.strip()})
    unknown = [s for s in scopes if s not in {x.value for x in KeyScope}]
    if unknown or not scopes:
        raise ValueError(
            f"scopes must be a non-empty subset of {', '.join(s.value for s in KeyScope)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self._read = session_factory(engine)
        self._write = session_factory(engine, writer=True)

    def create(
        self,
        name: str,
        scopes: Sequence[str],
        created_by: str,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> CreatedKey:
        key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
        secret = secrets.token_urlsafe(32)
        row = ApiKey(
            key_id=key_id,
            key_sha256=_digest(secret),
            name=name,
            scopes=",".join(parse_scopes(scopes)),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            created_by=created_by,
        )
        with self._write.begin() as session:
            session.add(row)
        return CreatedKey(key=f"ns_{key_id}_{secret}", row=row)

    def list(self) -> Sequence[ApiKey]:
        with self._read() as session:
            return session.scalars(select(ApiKey).order_by(ApiKey.id)).all()

    def revoke(self, key_id: str) -> ApiKey | None:
        with self._write.begin() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            if row is not None and row.revoked_at is None:
                row.revoked_at = utcnow()
            return row

    def authenticate(self, presented: str) -> Principal:
        """The key's principal; looked up on every request so revocation is immediate."""
        match = _KEY_PATTERN.match(presented)
        if match is None:
            raise Unauthorized("malformed API key")
        key_id, secret = match.groups()
        with self._read() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None or not hmac.compare_digest(row.key_sha256, _digest(secret)):
            raise Unauthorized("unknown API key")
        if row.revoked_at is not None:
            raise Unauthorized("API key has been revoked")
        return Principal(
            key_id=row.key_id,
            name=row.name,
            scopes=frozenset(row.scopes.split(",")),
            requests_per_minute=row.requests_per_minute,
            tokens_per_minute=row.tokens_per_minute,
        )


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


class QuotaLimiter:
    """Per-key request and token quotas, per service process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    def admit(self, principal: Principal) -> None:
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

    def charge_tokens(self, principal: Principal, tokens: int) -> None:
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
