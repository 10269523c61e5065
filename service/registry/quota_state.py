"""Per-key quotas counted in PostgreSQL, so every replica on one database shares one budget.

Each (key, kind) row holds one number, the GCRA "theoretical arrival time" (TAT): the token
bucket of the in-process limiter written as a timestamp. A bucket of `capacity` units per
minute refills one unit every `60 / capacity` seconds; it is full when TAT <= now and empty
when TAT >= now + 60 s. Admitting a request is one atomic upsert (the row lock orders
concurrent replicas), on the database's clock, so replicas' clocks do not matter and, unlike
fixed minute windows, no burst of twice the quota fits across a window boundary.
"""

from __future__ import annotations

import math
from enum import StrEnum

from sqlalchemy import Engine, text

WINDOW_S = 60.0  # quotas are per minute
# Float rounding: `capacity` costs of 60/capacity must fit in the window exactly.
_EPSILON_S = 1e-6

# `now()` is the transaction's start on the database's clock: one instant per statement pair.
_TAKE = text(
    """
    INSERT INTO quota_state AS q (key_id, kind, tat_s)
    VALUES (:key_id, :kind, extract(epoch FROM now())::float8 + :cost_s)
    ON CONFLICT (key_id, kind) DO UPDATE
        SET tat_s = greatest(q.tat_s, extract(epoch FROM now())::float8) + :cost_s
        WHERE greatest(q.tat_s, extract(epoch FROM now())::float8) + :cost_s
              - extract(epoch FROM now())::float8 <= :window_s
    RETURNING q.tat_s
    """
)
_CHARGE = text(
    """
    INSERT INTO quota_state AS q (key_id, kind, tat_s)
    VALUES (:key_id, :kind, extract(epoch FROM now())::float8 + :cost_s)
    ON CONFLICT (key_id, kind) DO UPDATE
        SET tat_s = greatest(q.tat_s, extract(epoch FROM now())::float8) + :cost_s
    """
)
_AHEAD = text(
    "SELECT tat_s - extract(epoch FROM now())::float8 FROM quota_state "
    "WHERE key_id = :key_id AND kind = :kind"
)


class QuotaKind(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"


class QuotaState:
    """The shared buckets. Every method is one statement in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("shared quotas need PostgreSQL (SQLite counts in process)")
        self._engine = engine

    def take(self, key_id: str, kind: QuotaKind, units: float, per_minute: int) -> int | None:
        """Take `units` if the bucket holds them; None when taken, else seconds to wait."""
        cost_s = units * WINDOW_S / per_minute
        params = {
            "key_id": key_id,
            "kind": kind.value,
            "cost_s": cost_s,
            "window_s": WINDOW_S + _EPSILON_S,
        }
        with self._engine.begin() as conn:
            if conn.execute(_TAKE, params).first() is not None:
                return None
            ahead_s = conn.execute(_AHEAD, params).scalar_one()
        return _wait_s(ahead_s + cost_s)

    def empty_for(self, key_id: str, kind: QuotaKind, per_minute: int) -> int | None:
        """Seconds until the bucket holds one unit again, or None if it holds one now (a
        bucket in debt refuses until it has refilled)."""
        with self._engine.connect() as conn:
            ahead_s = conn.execute(_AHEAD, {"key_id": key_id, "kind": kind.value}).scalar()
        if ahead_s is None or ahead_s < WINDOW_S:
            return None
        return _wait_s(ahead_s + WINDOW_S / per_minute)

    def charge(self, key_id: str, kind: QuotaKind, units: float, per_minute: int) -> None:
        """Take `units` whether or not the bucket holds them (it may go into debt)."""
        cost_s = units * WINDOW_S / per_minute
        with self._engine.begin() as conn:
            conn.execute(_CHARGE, {"key_id": key_id, "kind": kind.value, "cost_s": cost_s})


def _wait_s(ahead_after_s: float) -> int:
    """Seconds until a bucket whose TAT would be `ahead_after_s` from now fits the window."""
    return max(1, math.ceil(ahead_after_s - WINDOW_S))
