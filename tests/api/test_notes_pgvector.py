"""/notes and /search over real HTTP with NOTESPACE_VECTOR_STORE=pgvector on a real PostgreSQL
with pgvector: the FAISS suite's search tests again (imported below, so they run here with this
module's `c`), what /info and /index/stats say, a rebuild and promotion, and a database that
goes away mid-service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_notes import (  # noqa: F401 - collected again, against pgvector
    TEXTS,
    index,
    note,
    test_filters_keep_recall,
    test_index_get_search_delete,
    test_upsert_is_idempotent_and_changes_replace,
)
from tests.conftest import LiveServer, make_settings, registry_with_versions
from tests.support.pgvector_server import PgvectorServer

NOTESPACE = str(Path(sys.executable).with_name("notespace"))


@pytest.fixture()
def live(pgvector_database_url: str, tiny_bundle: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tiny_bundle, database_url=pgvector_database_url, vector_store="pgvector", warmup=False
    )
    with LiveServer(settings) as server:
        yield server


@pytest.fixture()
def c(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def test_info_and_stats_name_the_database_not_a_snapshot(c: httpx.Client, live: LiveServer) -> None:
    index(c, [note(i) for i in range(10)])
    info = c.get("/info").json()["index"]
    assert info["rows"] == 10 and info["opened_from"] == "database" and info["snapshot"] is None
    stats = c.get("/index/stats").json()
    assert stats["kind"] == "pgvector-hnsw" and stats["index_rows"] == 10
    assert stats["live_notes"] == stats["notes_with_vectors"] == 10 and stats["memory_bytes"] > 0
    # Nothing was written beside the database.
    assert not any(Path(live.settings.index_dir).iterdir())


def test_rebuild_writes_the_new_version_partition_then_promotion_serves_it(
    pgvector_database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry_with_versions(pgvector_database_url, tiny_bundle, tiny_bundle_v2)
    settings = make_settings(
        tiny_bundle, database_url=pgvector_database_url, vector_store="pgvector", warmup=False
    )
    env = {
        **os.environ,
        "NOTESPACE_DATABASE_URL": pgvector_database_url,
        "NOTESPACE_VECTOR_STORE": "pgvector",
    }
    with LiveServer(settings) as live, live.client() as c:
        index(c, [note(i) for i in range(12)])
        assert c.post("/models/tiny@2/promote").status_code == 409  # v2 covers nothing yet
        rebuilt = subprocess.run(
            [NOTESPACE, "index", "rebuild", "--model", "tiny@2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "embedded 12 notes, index holds 12 of 12" in rebuilt.stdout
        assert c.post("/models/tiny@2/promote").status_code == 200
        hit = c.post("/search", json={"query": TEXTS[4], "k": 1}).json()
        assert hit["model"]["version"] == "2" and hit["results"][0]["id"] == "note-4"
        stats = c.get("/index/stats").json()
        assert stats["model"] == "tiny@2" and stats["index_rows"] == 12


def test_database_down_is_a_503_and_loses_nothing(
    pgvector_server: PgvectorServer, c: httpx.Client
) -> None:
    index(c, [note(i) for i in range(8)])
    before = c.post("/search", json={"query": TEXTS[3], "k": 8}).json()["results"]
    pgvector_server.stop()
    try:
        r = c.post("/search", json={"query": TEXTS[3], "k": 8})
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
        assert "Retry-After" in r.headers and TEXTS[3] not in r.text
        assert c.post("/notes", json={"notes": [note(9)]}).status_code == 503
    finally:
        pgvector_server.start()
    after = c.post("/search", json={"query": TEXTS[3], "k": 8}).json()["results"]
    assert after == before
    assert c.get("/notes/note-9").status_code == 404  # refused, so not stored
