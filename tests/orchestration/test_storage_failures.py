"""Failing storage (issue 14): an index directory that is full or read-only at start, a full
disk under the SQLite database, and a PostgreSQL outage mid-load. The service starts and
serves, answers 503 with a clear code and Retry-After (never 500, never a reset connection),
acknowledges nothing that was not committed, and recovers by itself."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.registry.audit import AuditLog
from service.registry.database import make_engine, upgrade
from tests.conftest import LiveServer, make_settings
from tests.support.crash_harness import CrashState, verify
from tests.support.failing_storage import (
    SmallFilesystem,
    ThrowawayPostgres,
    index_through_outage,
    small_filesystem,
)
from tests.support.tiny_model import synthetic_corpus

TEXTS = synthetic_corpus(200, seed=5)


def _wait_for(predicate: object, timeout_s: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _snapshot_state(c: httpx.Client) -> dict[str, object]:
    return c.get("/info").json()["index"]["snapshot"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_unwritable_index_directory_at_start_serves_from_memory_and_recovers(
    tiny_bundle: Path, failure: str
) -> None:
    with small_filesystem(64) as fs:
        index_dir = fs.path / "index"
        index_dir.mkdir()
        if failure == "full":
            fs.fill()
        else:
            fs.read_only()
        settings = make_settings(
            tiny_bundle,
            index_dir=index_dir,
            warmup=False,
            index_snapshot_retry_s=0.3,
            registry_poll_s=0.2,  # the poller retries due checkpoints
        )
        with LiveServer(settings) as live, live.client() as c:  # it starts: no exit 3
            state = _snapshot_state(c)
            assert state["state"] == "failing"
            assert str(state["last_error"]).startswith("ENOSPC" if failure == "full" else "EROFS")
            notes = [{"id": f"n{i}", "text": TEXTS[i]} for i in range(20)]
            assert c.post("/notes", json={"notes": notes}).status_code == 200
            hits = c.post("/search", json={"query": TEXTS[3], "k": 1}).json()["results"]
            assert hits[0]["id"] == "n3"
            if failure == "full":
                fs.free()
            else:
                fs.read_only(False)
            _wait_for(lambda: _snapshot_state(c)["state"] == "ok")
            assert list(index_dir.glob("*.nsidx"))
            assert _snapshot_state(c)["unsaved_rows"] == 0


def _sqlite_on(fs: SmallFilesystem) -> str:
    url = f"sqlite:///{fs.path}/registry.db"
    upgrade(url)
    return url


def test_full_disk_under_sqlite_is_503_acknowledges_nothing_and_recovers(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "CANARYfull93"
    with small_filesystem(2048) as fs:
        settings = make_settings(tiny_bundle, database_url=_sqlite_on(fs), warmup=False)
        with LiveServer(settings) as live, live.client() as c:
            assert c.post("/notes", json={"notes": [{"id": "before", "text": TEXTS[0]}]}).is_success
            fs.fill()
            refused = []
            for i in range(5):
                batch = [{"id": f"full{i}-{j}", "text": f"{canary} {TEXTS[j]}"} for j in range(8)]
                refused.append(c.post("/notes", json={"notes": batch}))
            for r in refused:
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "storage_full" and r.headers["retry-after"]
                assert canary not in r.text
            health = c.get("/health")  # same connection: no reset
            assert health.extensions["network_stream"] is refused[-1].extensions["network_stream"]
            fs.free()
            _wait_for(
                lambda: (
                    c.post("/notes", json={"notes": [{"id": "after", "text": TEXTS[1]}]}).is_success
                )
            )
            for key in ("before", "after"):
                assert c.get(f"/notes/{key}").status_code == 200
            assert all(c.get(f"/notes/full{i}-0").status_code == 404 for i in range(5))
            stats = c.get("/index/stats").json()
            assert stats["live_notes"] == stats["index_rows"] == 2, stats
    assert canary not in caplog.text


def test_postgres_outage_mid_load_is_fast_503_then_recovers_losing_nothing(
    tiny_bundle: Path,
) -> None:
    with ThrowawayPostgres() as pg:
        upgrade(pg.url)
        settings = make_settings(
            tiny_bundle,
            database_url=pg.url,
            warmup=False,
            registry_poll_s=0.5,
            database_connect_timeout_s=2,
        )
        state = CrashState()
        with LiveServer(settings) as live:
            outcomes = index_through_outage(live.url, pg, state, outage_s=2.0)
            verify(live.url, state)  # every acknowledged note: stored, indexed once, found
            # The refusals were audited too: held while the database was down, then written.
            audit = AuditLog(make_engine(pg.url))
            _wait_for(lambda: any(e.status == 503 for e in audit.entries()))
        statuses = {status for status, _, _ in outcomes}
        assert statuses <= {200, 503}, statuses
        refused = [(s, seconds, retry) for s, seconds, retry in outcomes if s == 503]
        assert refused, "the outage was not seen"
        assert all(retry for _, _, retry in refused)
        assert max(seconds for _, seconds, _ in refused) < settings.database_connect_timeout_s + 2
        assert len(state.acked) > 0
