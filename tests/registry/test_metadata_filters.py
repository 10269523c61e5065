"""Metadata filters compare JSON values, never casts of another note's value (issue 14: on
PostgreSQL `{"mrn": 5}` failed when some note held `"mrn": "abc"`; on SQLite 'abc' cast to 0):
property-tested against a reference on SQLite and PostgreSQL; metadata bounds and times in UTC
over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.registry.database import make_engine, upgrade
from service.registry.notes import NoteFilters, NoteInput, NoteStore
from tests.conftest import (
    LiveServer,
    make_settings,
    migrated_sqlite_url,
    registry_with_versions,
    scratch_postgres_database,
)

MISSING = object()
KEYS = ["mrn", "ward", 'a"b', "x.y", "$[0]", "é"]
# Integers stay within 2**53: beyond it float and integer equality differ between databases
# (and between JSON readers), which no clinical identifier should rely on.
VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    # The API refuses NUL and unpaired surrogates at the door (service/api/input_rules.py),
    # so the stores never see them.
    | st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=6,
    )
    | st.sampled_from(["abc", "5", "true", "", "null"])
)
METADATA = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4)


def reference_match(metadata: dict[str, Any] | None, key: str, value: Any) -> bool:
    stored = (metadata or {}).get(key, MISSING)
    if value is None:
        return stored is MISSING or stored is None
    if stored is MISSING or stored is None:
        return False
    if isinstance(value, bool) or isinstance(stored, bool):
        return isinstance(value, bool) and isinstance(stored, bool) and value == stored
    if isinstance(value, int | float):
        return isinstance(stored, int | float) and stored == value
    return isinstance(stored, str) and stored == value


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def store(
    request: pytest.FixtureRequest, tiny_bundle: Path
) -> Iterator[tuple[NoteStore, int, dict[int, Any]]]:
    """A note store, the model version its vectors belong to, and every note stored so far
    (row id → metadata) for the reference."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = migrated_sqlite_url()
        else:
            url = stack.enter_context(scratch_postgres_database())
            upgrade(url)
        registry = registry_with_versions(url, tiny_bundle)
        version = registry.active("tiny")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield NoteStore(engine, store_text=False), version.id, {}


_ids = itertools.count()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    notes=st.lists(METADATA, min_size=1, max_size=5),
    filters=st.lists(
        st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=2),
        min_size=1,
        max_size=3,
    ),
    reuse=st.booleans(),
)
def test_filters_match_the_reference(
    store: tuple[NoteStore, int, dict[int, Any]],
    notes: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    reuse: bool,
) -> None:
    note_store, version_id, stored = store
    inputs = [NoteInput(key=f"m{next(_ids)}", text="x", extra=m or None) for m in notes]
    vectors = {n.key: np.ones(4, dtype=np.float32) for n in inputs}
    note_store.upsert(inputs, vectors, version_id)
    for item in inputs:
        meta = note_store.get(item.key)
        assert meta is not None
        stored[meta.row_id] = item.extra
    if reuse:  # filter by values some note really holds, so matches are not all empty
        filters = [{k: v for k, v in m.items()} for m in notes if m] or filters
    for wanted in filters:
        found = set(note_store.filter_ids(NoteFilters(metadata=wanted)).tolist())
        expected = {
            rid
            for rid, meta in stored.items()
            if all(reference_match(meta, k, v) for k, v in wanted.items())
        }
        assert found == expected, wanted


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def c(request: pytest.FixtureRequest, tiny_bundle: Path) -> Iterator[httpx.Client]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = migrated_sqlite_url()
        else:
            url = stack.enter_context(scratch_postgres_database())
            upgrade(url)
        settings_ = make_settings(
            tiny_bundle,
            database_url=url,
            warmup=False,
            max_metadata_value_chars=64,
            max_metadata_bytes=1024,
        )
        live = stack.enter_context(LiveServer(settings_))
        yield stack.enter_context(live.client())


def _ids_for(c: httpx.Client, metadata: dict[str, Any]) -> set[str]:
    r = c.post("/search", json={"query": "x", "k": 50, "filters": {"metadata": metadata}})
    assert r.status_code == 200, r.text
    return {h["id"] for h in r.json()["results"]}


def test_a_filter_of_one_type_never_fails_on_another_notes_value(c: httpx.Client) -> None:
    values = {"s": "abc", "i": 5, "f": 5.0, "b": True, "n": None, "digits": "5"}
    notes = [{"id": k, "text": "x", "metadata": {"mrn": v}} for k, v in values.items()]
    assert (
        c.post("/notes", json={"notes": [*notes, {"id": "none", "text": "x"}]}).status_code == 200
    )
    assert _ids_for(c, {"mrn": 5}) == {"i", "f"}
    assert _ids_for(c, {"mrn": 5.0}) == {"i", "f"}
    assert _ids_for(c, {"mrn": "5"}) == {"digits"}
    assert _ids_for(c, {"mrn": True}) == {"b"}
    assert _ids_for(c, {"mrn": 1}) == set()  # true is not 1
    assert _ids_for(c, {"mrn": "abc"}) == {"s"}
    mine = {*values, "none"}
    assert _ids_for(c, {"mrn": None}) & mine == {"n", "none"}  # null or absent


@pytest.mark.parametrize(
    "metadata",
    [
        {"v": "x" * 5_000_000},  # the 5 MB value
        {"v": "x" * 65},
        {f"k{i}": i for i in range(33)},
        {"k" * 65: 1},
        {f"k{i}": "y" * 60 for i in range(30)},  # each value fits; the whole is over 8192 bytes
    ],
)
def test_metadata_beyond_its_bounds_is_413_and_nothing_is_stored(
    c: httpx.Client, metadata: dict[str, Any]
) -> None:
    r = c.post("/notes", json={"notes": [{"id": "big", "text": "x", "metadata": metadata}]})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error"]["code"] == "metadata_too_large"
    assert len(r.content) < 1000  # nothing echoed
    assert c.get("/notes/big").status_code == 404
    search = c.post("/search", json={"query": "x", "filters": {"metadata": metadata}})
    assert search.status_code == 413


def test_times_are_stored_and_compared_in_utc(c: httpx.Client) -> None:
    notes = [
        {"id": "plus5", "text": "x", "time": "2026-03-01T03:00:00+05:00"},  # 2026-02-28 22:00Z
        {"id": "utc", "text": "x", "time": "2026-03-01T01:00:00Z"},
    ]
    assert c.post("/notes", json={"notes": notes}).status_code == 200
    assert c.get("/notes/plus5").json()["time"].startswith("2026-02-28T22:00:00")
    window = {"time_from": "2026-02-28T21:00:00Z", "time_to": "2026-02-28T23:00:00Z"}
    r = c.post("/search", json={"query": "x", "filters": window}).json()
    assert [h["id"] for h in r["results"]] == ["plus5"]
    for bad in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"):
        r = c.post("/notes", json={"notes": [{"id": "edge", "text": "x", "time": bad}]})
        assert r.status_code == 422 and r.json()["error"]["param"] == "notes[0].time"
        r = c.post("/search", json={"query": "x", "filters": {"time_from": bad}})
        assert r.status_code == 422
    assert c.get("/notes/edge").status_code == 404
