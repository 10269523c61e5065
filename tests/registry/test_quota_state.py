"""Quotas counted in PostgreSQL: one budget whoever asks, exact under concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from service.registry.database import make_engine, upgrade
from service.registry.quota_state import QuotaKind, QuotaState
from tests.conftest import scratch_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def engines() -> Iterator[list[Engine]]:
    """Three engines on one database: three replicas' connection pools."""
    with scratch_postgres_database() as url:
        upgrade(url)
        pools = [make_engine(url) for _ in range(3)]
        yield pools
        for pool in pools:
            pool.dispose()


def test_requests_per_minute_hold_across_pools_under_concurrency(engines: list[Engine]) -> None:
    states = [QuotaState(engine) for engine in engines]

    def take(i: int) -> int | None:
        return states[i % 3].take("k-concurrent", QuotaKind.REQUESTS, 1, 25)

    with ThreadPoolExecutor(12) as pool:
        waits = list(pool.map(take, range(60)))
    assert waits.count(None) == 25
    refused = [w for w in waits if w is not None]
    # The bucket refills one request every 60/25 = 2.4 s.
    assert all(1 <= w <= 3 for w in refused)


def test_keys_and_kinds_have_separate_budgets(engines: list[Engine]) -> None:
    state = QuotaState(engines[0])
    assert state.take("k-a", QuotaKind.REQUESTS, 1, 1) is None
    assert state.take("k-a", QuotaKind.REQUESTS, 1, 1) is not None
    assert state.take("k-b", QuotaKind.REQUESTS, 1, 1) is None
    assert state.empty_for("k-a", QuotaKind.TOKENS, 100) is None


def test_a_token_budget_in_debt_refuses_until_refilled(engines: list[Engine]) -> None:
    state = QuotaState(engines[1])
    assert state.empty_for("k-t", QuotaKind.TOKENS, 20) is None
    state.charge("k-t", QuotaKind.TOKENS, 50, 20)  # 30 tokens into debt: 90 s to refill
    wait = state.empty_for("k-t", QuotaKind.TOKENS, 20)
    assert wait is not None and 85 <= wait <= 93
    assert QuotaState(engines[2]).empty_for("k-t", QuotaKind.TOKENS, 20) == wait


def test_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        QuotaState(make_engine("sqlite://"))
