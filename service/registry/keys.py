"""API keys in the database: random, shown once, stored only as a sha256.

A key reads `ns_<key_id>_<secret>`. The key id is public (it names the key in lists and audit
entries); the secret is 32 random bytes, so a plain sha256 is enough to store it safely.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, select

from service.errors import Unauthorized
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

    def verify(self, presented: str) -> ApiKey:
        """The live key `presented` is; looked up on every request so revocation is immediate."""
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
        return row
