"""The pgvector store on a real PostgreSQL with pgvector: writes in the note's transaction,
search by one statement with the filters in its WHERE clause, both search paths against exact
numpy search, and a clear error where the extension is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, inspect, select, table, text
from sqlalchemy.orm import Session

from service.bundle import load_bundle
from service.errors import Conflict
from service.orchestration.vector_stores import PgvectorVectorStore
from service.registry.database import downgrade, make_engine, upgrade
from service.registry.models import ModelRegistry
from service.registry.notes import NoteFilters, NoteInput, NoteStore, filter_conditions
from service.registry.pgvector_store import (
    PgvectorConfig,
    PgvectorMissing,
    PgvectorStore,
    vector_literal,
)
from service.settings import Settings
from tests.conftest import scratch_postgres_database

NOTESPACE = str(Path(sys.executable).with_name("notespace"))
DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def setup(
    pgvector_database_url: str, tiny_bundle: Path
) -> Iterator[tuple[Engine, PgvectorStore, NoteStore, int]]:
    engine = make_engine(pgvector_database_url)
    version = ModelRegistry(engine).register(load_bundle(tiny_bundle), "alice")
    pgvector = PgvectorStore(engine, PgvectorConfig())
    pgvector.ensure_schema()
    pgvector.ensure_partition(version.id, DIM)
    yield engine, pgvector, NoteStore(engine, store_text=True, vector_table=pgvector), version.id
    engine.dispose()


def embeddings_of(engine: Engine, version_id: int) -> dict[int, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT note_id, embedding::text FROM note_embeddings WHERE model_version_id = :v"
            ),
            {"v": version_id},
        ).all()
    return {int(i): np.array(e.strip("[]").split(","), dtype=np.float32) for i, e in rows}


def test_upsert_search_update_delete(setup: tuple[Engine, PgvectorStore, NoteStore, int]) -> None:
    engine, pgvector, store, version = setup
    rng = np.random.default_rng(0)
    vectors = unit(rng, 3)
    notes = [NoteInput(f"n{i}", f"text {i}", category="c" if i else "x") for i in range(3)]
    store.upsert(notes, {n.key: v for n, v in zip(notes, vectors, strict=True)}, version)
    ids = {m.key: m.row_id for m in store.metadata_for(list(range(1, 100))).values()}

    found = pgvector.search(version, DIM, vectors[1:2], 2, NoteFilters())
    assert found.hits(0)[0][0] == ids["n1"]
    assert found.hits(0)[0][1] == pytest.approx(1.0, abs=2e-3)  # halfvec: ~3 decimal digits
    only_x = pgvector.search(version, DIM, vectors[1:2], 3, NoteFilters(categories=["x"]))
    assert [i for i, _ in only_x.hits(0)] == [ids["n0"]]

    # A changed text replaces the note's vector: it is found by the new one, once.
    moved = unit(rng, 1)[0]
    store.upsert([NoteInput("n1", "new text", category="c")], {"n1": moved}, version)
    hits = pgvector.search(version, DIM, moved[None, :], 3, NoteFilters()).hits(0)
    assert hits[0][0] == ids["n1"] and hits[0][1] == pytest.approx(1.0, abs=2e-3)
    assert len(embeddings_of(engine, version)) == 3
    np.testing.assert_allclose(embeddings_of(engine, version)[ids["n1"]], moved, atol=1e-3)

    assert store.delete("n1")
    assert ids["n1"] not in embeddings_of(engine, version)
    hits = pgvector.search(version, DIM, moved[None, :], 3, NoteFilters()).hits(0)
    assert ids["n1"] not in [i for i, _ in hits] and len(hits) == 2
    stats = pgvector.stats(version)
    assert stats is not None and stats.rows == 2 and stats.has_index and stats.bytes > 0


def test_a_failed_note_write_leaves_no_vector(
    setup: tuple[Engine, PgvectorStore, NoteStore, int],
) -> None:
    engine, pgvector, _, version = setup

    class FailsAfterItsInsert(PgvectorStore):
        """The real insert runs, then the transaction fails (a crash between the two)."""

        def put(self, session: object, rows: object) -> None:
            super().put(session, rows)  # type: ignore[arg-type]
            raise RuntimeError("the write fails after the vectors went in")

    failing = FailsAfterItsInsert(engine, PgvectorConfig())
    store = NoteStore(engine, store_text=True, vector_table=failing)
    with pytest.raises(RuntimeError):
        store.upsert(
            [NoteInput("n1", "text")], {"n1": unit(np.random.default_rng(1), 1)[0]}, version
        )
    assert embeddings_of(engine, version) == {}
    assert store.get("n1") is None
    # A note whose vector went missing mid-batch is refused whole: nothing of it is stored.
    store = NoteStore(engine, store_text=True, vector_table=pgvector)
    with pytest.raises(Conflict):
        store.upsert(
            [NoteInput("a", "x"), NoteInput("b", "y")],
            {"a": unit(np.random.default_rng(2), 1)[0]},
            version,
        )
    assert embeddings_of(engine, version) == {} and store.get("a") is None


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def plan_of(
    engine: Engine, pgvector: PgvectorStore, version: int, filters: NoteFilters, *, exact: bool
) -> str:
    """EXPLAIN of the statement a search path sends (the query vector bound as pgvector text)."""
    statement = pgvector._statement(
        version,
        DIM,
        np.zeros(DIM, np.float32),
        10,
        filter_conditions(filters, "postgresql"),
        exact=exact,
    )
    compiled = statement.compile(
        dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    params = {
        k: vector_literal(v) if isinstance(v, np.ndarray) else v for k, v in compiled.params.items()
    }
    with Session(engine) as session, session.begin():
        if not exact:
            pgvector._walk_the_graph(session)
        rows = session.connection().exec_driver_sql("EXPLAIN " + compiled.string, params)
        return "\n".join(r[0] for r in rows)


def test_both_search_paths_match_exact_search(
    setup: tuple[Engine, PgvectorStore, NoteStore, int],
) -> None:
    """3,000 clustered vectors, 30 queries, k 10: recall@10 against numpy's exact top-10, with
    no filter and a 1 % filter, on the exact path and on the HNSW path with iterative scans."""
    engine, pgvector, store, version = setup
    rng = np.random.default_rng(7)
    centres = unit(rng, 30)
    vectors = centres[rng.integers(0, 30, 3000)] + 0.35 * unit(rng, 3000)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    notes = [
        NoteInput(f"n{i}", f"t{i}", category="rare" if i % 100 == 0 else "common")
        for i in range(3000)
    ]
    for start in range(0, 3000, 1000):
        batch = notes[start : start + 1000]
        store.upsert(batch, {n.key: vectors[start + j] for j, n in enumerate(batch)}, version)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # as autovacuum would have by now: the planner needs it
    row_of = {m.key: m.row_id for m in store.metadata_for(list(range(1, 4000))).values()}
    ids = np.array([row_of[f"n{i}"] for i in range(3000)])
    queries = unit(rng, 30) * 0.3 + centres[:30]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rare = np.arange(3000) % 100 == 0

    def truth(mask: np.ndarray) -> np.ndarray:
        scores = queries @ vectors[mask].T
        return ids[mask][np.argsort(-scores, axis=1)[:, :10]]

    paths = {
        "exact": replace(pgvector.config, exact_max_rows=10_000),
        "hnsw": replace(pgvector.config, exact_max_rows=0),
    }
    for path, config in paths.items():
        searcher = PgvectorStore(engine, config)
        for name, filters, mask in [
            ("unfiltered", NoteFilters(), np.ones(3000, dtype=bool)),
            ("1% filter", NoteFilters(categories=["rare"]), rare),
        ]:
            found = searcher.search(version, DIM, queries.astype(np.float32), 10, filters)
            assert (found.ids != -1).all(), (path, name)  # always k rows, even with a filter
            recall = recall_at(found.ids, truth(mask))
            assert recall >= 0.95, (path, name, recall)
            ordered = np.all(np.diff(found.scores, axis=1) <= 1e-6)
            assert ordered, (path, name)
            # Each path is the plan it claims: the exact one never walks the graph.
            plan = plan_of(engine, searcher, version, filters, exact=path == "exact")
            assert (f"note_embeddings_v{version}_hnsw" in plan) == (path == "hnsw"), plan


def test_migration_creates_the_parent_table_and_goes_down(pgvector_database_url: str) -> None:
    engine = make_engine(pgvector_database_url)
    assert "note_embeddings" in inspect(engine).get_table_names()
    downgrade(pgvector_database_url, "0006_quota_state")
    assert "note_embeddings" not in inspect(engine).get_table_names()
    upgrade(pgvector_database_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(table("note_embeddings"))) == 0
    engine.dispose()


def test_pgvector_needs_a_postgresql_url() -> None:
    with pytest.raises(ValueError, match="database_url must be a postgresql:// URL"):
        Settings(vector_store="pgvector", database_url="sqlite:///x.db")


@pytest.mark.postgres
def test_missing_extension_is_one_clear_line() -> None:
    """The machine's PostgreSQL has no pgvector: migrations still run (FAISS needs nothing),
    and the pgvector store refuses with one line, from the code and from the CLI."""
    with scratch_postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        assert "note_embeddings" not in inspect(engine).get_table_names()
        with pytest.raises(
            PgvectorMissing, match="pgvector extension not installed in this database"
        ):
            PgvectorStore(engine, PgvectorConfig()).ensure_schema()
        engine.dispose()
        env = {**os.environ, "NOTESPACE_DATABASE_URL": url, "NOTESPACE_VECTOR_STORE": "pgvector"}
        done = subprocess.run(
            [NOTESPACE, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            "pgvector extension not installed in this database (install pgvector on the server, "
            "then run `notespace db upgrade`)"
        ]


def test_switching_from_faiss_copies_the_logged_vectors(
    setup: tuple[Engine, PgvectorStore, NoteStore, int],
) -> None:
    """Notes written while the service ran the FAISS store are in the vector log only; opening
    the version under pgvector copies them into its partition, no re-embedding."""
    engine, pgvector, _, version = setup
    faiss_era = NoteStore(engine, store_text=True)  # no vector table: the FAISS store's writes
    vectors = unit(np.random.default_rng(3), 5)
    notes = [NoteInput(f"n{i}", f"text {i}") for i in range(5)]
    faiss_era.upsert(notes, {n.key: v for n, v in zip(notes, vectors, strict=True)}, version)
    assert embeddings_of(engine, version) == {}

    store = NoteStore(engine, store_text=True, vector_table=pgvector)
    opened = PgvectorVectorStore(pgvector, store).open(version, "tiny@1", DIM)
    assert len(embeddings_of(engine, version)) == 5
    hit = opened.search(vectors[2:3], 1, NoteFilters()).hits(0)[0]
    assert store.metadata_for([hit[0]])[hit[0]].key == "n2"
    assert pgvector.copy_from_log(version, DIM) == 0  # a second open copies nothing


def test_a_walk_short_of_k_is_answered_exactly(
    setup: tuple[Engine, PgvectorStore, NoteStore, int],
) -> None:
    """When the HNSW walk ends with fewer than k rows although more notes match (iterative
    scanning stopped at hnsw.max_scan_tuples; here the walk's statement is cut to 2 rows so it
    must), the search scores the filtered notes exactly instead."""
    engine, _, store, version = setup
    paths: list[bool] = []

    class WalksTwoRows(PgvectorStore):
        def _statement(self, *args: Any, exact: bool) -> Any:
            paths.append(exact)
            statement = super()._statement(*args, exact=exact)
            return statement if exact else statement.limit(2)

    rng = np.random.default_rng(11)
    vectors = unit(rng, 300)
    notes = [NoteInput(f"n{i}", f"t{i}", category="a" if i % 10 == 0 else "b") for i in range(300)]
    store.upsert(notes, {n.key: v for n, v in zip(notes, vectors, strict=True)}, version)
    row_of = {m.key: m.row_id for m in store.metadata_for(list(range(1, 400))).values()}
    ids = np.array([row_of[f"n{i}"] for i in range(300)])
    chosen = np.arange(300) % 10 == 0
    searcher = WalksTwoRows(engine, PgvectorConfig(exact_max_rows=0))
    found = searcher.search(version, DIM, vectors[:3], 10, NoteFilters(categories=["a"]))
    assert paths == [False, True] * 3  # each query: the walk, then the exact answer
    # The truth on the stored precision (halfvec), so near-ties rank as the database ranks them.
    as_stored = vectors.astype(np.float16).astype(np.float32)
    truth = exact_top_ids(as_stored[:3], as_stored[chosen], ids[chosen])
    assert [set(row) for row in found.ids] == [set(row) for row in truth]


def exact_top_ids(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]


@pytest.mark.postgres
def test_the_service_refuses_to_start_without_the_extension(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from service.metrics import ServiceMetrics
    from service.orchestration.resources import build_resources
    from tests.conftest import make_settings

    with scratch_postgres_database() as url:
        upgrade(url)
        settings = make_settings(tiny_bundle, database_url=url, vector_store="pgvector")
        with pytest.raises(PgvectorMissing):
            build_resources(settings, ServiceMetrics())
    critical = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert critical == [
        "cannot start: pgvector extension not installed in this database (install pgvector on "
        "the server, then run `notespace db upgrade`)"
    ]
