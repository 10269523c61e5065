"""Index lifecycle: one index per model version, rebuild for a new model, restart from a
snapshot or from the database, promotion waiting for a complete index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import LiveServer, make_settings, registry_with_versions
from tests.support.tiny_model import synthetic_corpus

NOTESPACE = str(Path(sys.executable).with_name("notespace"))
TEXTS = synthetic_corpus(30, seed=5)


def notes(n: int) -> list[dict[str, str]]:
    return [{"id": f"n{i}", "text": TEXTS[i], "category": "c"} for i in range(n)]


def cli(*args: str, settings_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTESPACE, *args],
        env={**os.environ, **settings_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_new_model_needs_rebuild_before_promotion(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path, tmp_path: Path
) -> None:
    registry_with_versions(database_url, tiny_bundle, tiny_bundle_v2)
    settings = make_settings(tiny_bundle, database_url=database_url, index_dir=tmp_path / "idx")
    env = {"NOTESPACE_DATABASE_URL": database_url, "NOTESPACE_INDEX_DIR": str(tmp_path / "idx")}
    with LiveServer(settings) as live, live.client() as c:
        assert c.post("/notes", json={"notes": notes(20)}).status_code == 200
        r = c.post("/models/tiny@2/promote")
        assert r.status_code == 409 and "covers 0 of 20" in r.json()["error"]["message"]

        refused = cli("models", "promote", "tiny@2", settings_env=env)
        assert refused.returncode != 0 and "covers 0 of 20" in refused.stderr

        stats = cli("index", "stats", settings_env=env)
        assert stats.returncode == 0, stats.stderr
        rebuilt = cli("index", "rebuild", "--model", "tiny@2", settings_env=env)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "embedded 20 notes, index holds 20 of 20" in rebuilt.stdout

        assert c.post("/models/tiny@2/promote").status_code == 200
        hit = c.post("/search", json={"query": TEXTS[4], "k": 1}).json()
        assert hit["model"]["version"] == "2" and hit["results"][0]["id"] == "n4"
        assert c.get("/index/stats").json()["index_rows"] == 20
        # Notes indexed now go to the v2 index; v1's vectors are left behind, not mixed in.
        assert c.post("/notes", json={"notes": notes(25)[20:]}).status_code == 200
        assert c.get("/index/stats").json() | {"memory_bytes": 0} == {
            "model": "tiny@2",
            "live_notes": 25,
            "notes_with_vectors": 25,
            "index_rows": 25,
            "kind": "flat",
            "sequence_watermark": c.get("/index/stats").json()["sequence_watermark"],
            "memory_bytes": 0,
        }


def test_restart_uses_snapshot_and_survives_a_corrupt_one(
    database_url: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "idx"
    settings = make_settings(tiny_bundle, database_url=database_url, index_dir=index_dir)
    with LiveServer(settings) as live, live.client() as c:
        c.post("/notes", json={"notes": notes(12)})
        before = c.post("/search", json={"query": TEXTS[3], "k": 12}).json()["results"]
    (snapshot,) = index_dir.glob("*.nsidx")  # written at shutdown
    with LiveServer(settings) as live, live.client() as c:
        after = c.post("/search", json={"query": TEXTS[3], "k": 12}).json()["results"]
        c.post("/notes", json={"notes": [{"id": "late", "text": TEXTS[20]}]})
    assert [h["id"] for h in after] == [h["id"] for h in before]
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    with LiveServer(settings) as live, live.client() as c:
        stats = c.get("/index/stats").json()
        assert (stats["index_rows"], stats["live_notes"]) == (13, 13)
        assert (
            c.post("/search", json={"query": TEXTS[20], "k": 1}).json()["results"][0]["id"]
            == "late"
        )
