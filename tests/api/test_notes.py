"""/notes and /search over real HTTP, a real FAISS index and a real database (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, make_settings
from tests.support.tiny_model import synthetic_corpus

CANARY = "CANARY-okapi-7781"
TEXTS = synthetic_corpus(60, seed=21)


def note(i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"note-{i}",
        "text": TEXTS[i],
        "category": ["radiology", "nursing", "discharge"][i % 3],
        "time": f"2026-0{1 + i % 9}-15T10:00:00+00:00",
        "source": "epr" if i % 2 else "pas",
        "metadata": {"ward": f"w{i % 5}", "bed": i % 7},
        **extra,
    }


@pytest.fixture()
def live(database_url: str, tiny_bundle: Path) -> Iterator[LiveServer]:
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as server:
        yield server


@pytest.fixture()
def c(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def index(c: httpx.Client, notes: list[dict[str, object]]) -> list[str]:
    r = c.post("/notes", json={"notes": notes})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"name": "tiny", "version": "1"}
    assert r.headers["X-Notespace-Model"] == "tiny@1"
    return [x["status"] for x in r.json()["results"]]


def test_index_get_search_delete(c: httpx.Client) -> None:
    assert index(c, [note(i) for i in range(40)]) == ["created"] * 40
    meta = c.get("/notes/note-3").json()
    assert meta["category"] == "radiology" and meta["metadata"] == {"ward": "w3", "bed": 3}
    assert "text" not in meta

    # A note's own text finds that note first.
    for i in (0, 7, 33):
        response = c.post("/search", json={"query": TEXTS[i], "k": 5})
        assert response.headers["X-Notespace-Model"] == "tiny@1"  # which model scored it
        r = response.json()
        assert r["results"][0]["id"] == f"note-{i}"
        assert r["results"][0]["score"] > 0.999
        assert "text" not in r["results"][0] and "embedding" not in r["results"][0]

    # Neighbours of an indexed note exclude the note itself.
    hits = c.post("/search", json={"note_id": "note-5", "k": 10}).json()["results"]
    assert len(hits) == 10 and "note-5" not in [h["id"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    assert c.delete("/notes/note-7").json() == {"id": "note-7", "deleted": True}
    assert c.get("/notes/note-7").status_code == 404
    r = c.post("/search", json={"query": TEXTS[7], "k": 40}).json()
    assert "note-7" not in [h["id"] for h in r["results"]]
    assert c.delete("/notes/note-7").status_code == 404


def test_upsert_is_idempotent_and_changes_replace(c: httpx.Client) -> None:
    assert index(c, [note(1), note(2)]) == ["created", "created"]
    assert index(c, [note(1), note(2)]) == ["unchanged", "unchanged"]
    assert index(c, [note(1, category="letter"), note(2, text=TEXTS[50])]) == [
        "updated",
        "updated",
    ]
    assert c.get("/notes/note-1").json()["category"] == "letter"
    r = c.post("/search", json={"query": TEXTS[50], "k": 2}).json()["results"]
    assert r[0]["id"] == "note-2"
    # Still exactly one entry per note in the index (no duplicate vectors).
    all_hits = c.post("/search", json={"query": TEXTS[2], "k": 10}).json()["results"]
    assert sorted(h["id"] for h in all_hits) == ["note-1", "note-2"]


def test_filters_keep_recall(c: httpx.Client) -> None:
    index(c, [note(i) for i in range(60)])
    body = {"query": TEXTS[0], "k": 5, "filters": {"categories": ["nursing"], "sources": ["epr"]}}
    hits = c.post("/search", json=body).json()["results"]
    expected = {f"note-{i}" for i in range(60) if i % 3 == 1 and i % 2 == 1}
    assert len(hits) == 5 and {h["id"] for h in hits} <= expected
    # A filter matching one note returns exactly it.
    only = {"query": TEXTS[0], "k": 5, "filters": {"metadata": {"ward": "w4", "bed": 6}}}
    ids = {h["id"] for h in c.post("/search", json=only).json()["results"]}
    assert ids == {f"note-{i}" for i in range(60) if i % 5 == 4 and i % 7 == 6}
    timed = {
        "query": TEXTS[0],
        "k": 50,
        "filters": {"time_from": "2026-03-01T00:00:00Z", "time_to": "2026-03-31T00:00:00Z"},
    }
    ids = {h["id"] for h in c.post("/search", json=timed).json()["results"]}
    assert ids == {f"note-{i}" for i in range(60) if 1 + i % 9 == 3}
    none = {"query": TEXTS[0], "k": 5, "filters": {"categories": ["absent"]}}
    assert c.post("/search", json=none).json()["results"] == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/notes", {"notes": []}, 400),
        ("/notes", {"notes": [note(1), note(1)]}, 400),
        ("/notes", {"notes": [{"id": "x", "text": "  "}]}, 400),
        ("/notes", {"notes": [{"id": "", "text": CANARY}]}, 422),
        ("/notes", {"notes": [{"id": "x", "text": CANARY, "time": "yesterday"}]}, 422),
        ("/notes", {"notes": [{"id": "x", "text": CANARY, "time": "2026-01-01T00:00:00"}]}, 422),
        ("/notes", {"notes": [{"id": "x", "text": CANARY, "metadata": {"a": [1]}}]}, 422),
        ("/search", {"query": CANARY, "k": 0}, 400),
        ("/search", {"query": CANARY, "k": 10_000}, 413),
        ("/search", {"query": CANARY, "k": "5"}, 422),
        ("/search", {"query": CANARY, "note_id": "note-1"}, 400),
        ("/search", {"k": 3}, 400),
        ("/search", {"note_id": "never-indexed"}, 404),
        ("/search", {"query": CANARY, "filters": {"categories": "radiology"}}, 422),
        ("/search", {"query": CANARY, "filters": {"time_from": "last week"}}, 422),
        ("/search", {"query": CANARY, "filters": {"colour": "red"}}, 422),
        (
            "/search",
            {
                "query": CANARY,
                "filters": {"time_from": "2026-02-01T00:00:00Z", "time_to": "2026-01-01T00:00:00Z"},
            },
            400,
        ),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    c: httpx.Client, path: str, body: object, status: int
) -> None:
    index(c, [note(1)])
    r = c.post(path, json=body)
    assert r.status_code == status, r.text
    assert CANARY not in r.text and r.json()["error"]["message"]
    assert c.get("/notes/x").status_code == 404
    assert index(c, [note(1)]) == ["unchanged"]
