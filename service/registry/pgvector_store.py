"""Note vectors searched inside PostgreSQL with pgvector: one table, `note_embeddings`, LIST
partitioned by model version, one HNSW index per partition, written in the note's own
transaction (so the database's durability is the index's: no snapshot, no replay).

Vectors are stored as `halfvec` (2 bytes a dimension): recall@10 against exact search measured
the same as float32 `vector` storage at half the bytes (bench/pgvector_recall.py,
docs/benchmarks.md). The parent column has no dimension (versions may differ); each partition
checks its dimension and indexes `embedding::halfvec(dim)`, the expression the search orders by.

A filtered search decides its own path, because pgvector's planner cannot be trusted to: when
the filter matches at most `exact_max_rows` notes it scores them all (ORDER BY a distance the
HNSW index does not cover, so the planner cannot pick the graph), otherwise it walks the graph
with `hnsw.iterative_scan = relaxed_order`, which keeps scanning until k rows pass the filter
(without it, a 1 % filter returned 0.4 rows of 10 on average); a walk that still ends short of
k rows is answered exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    bindparam,
    cast,
    column,
    exists,
    func,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import UserDefinedType

from service.index.base import MISSING_ID, SearchResult, Vectors
from service.registry.database import SchemaError, session_factory
from service.registry.note_vectors import decode_vectors
from service.registry.notes import NoteFilters, filter_conditions
from service.registry.tables import Note, NoteVector

PARENT_TABLE = "note_embeddings"

# The same DDL as migration 0007 (which runs it where the extension is available); repeated
# here so a database that gained pgvector after migrating is completed at start.
PARENT_DDL = f"""
CREATE TABLE IF NOT EXISTS {PARENT_TABLE} (
    model_version_id integer NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
    note_id bigint NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    embedding halfvec NOT NULL,
    PRIMARY KEY (model_version_id, note_id)
) PARTITION BY LIST (model_version_id)
"""

# Serialises partition and index DDL across replicas (an arbitrary, fixed advisory-lock key).
_DDL_LOCK_KEY = 7_311_017


class PgvectorMissing(SchemaError):
    """The database lacks the pgvector extension (or cannot have it)."""


class HalfVec(UserDefinedType[Any]):
    """pgvector's `halfvec(dim)` (or dimensionless); values bind as pgvector text '[x,...]'."""

    cache_ok = True

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def get_col_spec(self, **_: Any) -> str:
        return "halfvec" if self.dim is None else f"halfvec({int(self.dim)})"

    def bind_processor(self, dialect: Any) -> Any:
        return vector_literal


def vector_literal(vector: Any) -> str:
    """A vector in pgvector's text form; 9 significant digits round-trip a float32 exactly."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


def partition_name(model_version_id: int) -> str:
    return f"{PARENT_TABLE}_v{int(model_version_id)}"


@dataclass(frozen=True)
class PgvectorConfig:
    hnsw_m: int = 16
    ef_construction: int = 64
    ef_search: int = 100
    # A filter matching at most this many notes is scored exactly: at 20k MTSamples passages
    # the exact path ran 400 q/s over 200 rows and 58 over 2,000, the HNSW path 75-180
    # (bench/pgvector_recall.py); the crossover is near 1,000.
    exact_max_rows: int = 1_000


@dataclass(frozen=True)
class PartitionStats:
    rows: int
    bytes: int  # table, TOAST and indexes (pg_total_relation_size)
    has_index: bool


_embeddings = table(
    PARENT_TABLE, column("model_version_id"), column("note_id"), column("embedding")
)


class PgvectorStore:
    """The vectors of every model version, in the notes database."""

    def __init__(self, engine: Engine, config: PgvectorConfig) -> None:
        self._engine = engine
        self._read = session_factory(engine)
        self.config = config

    # -- schema ----------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Check the extension is installed and the parent table exists (created if not)."""
        with self._engine.begin() as connection:
            installed = connection.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
            if installed is None:
                raise PgvectorMissing(
                    "pgvector extension not installed in this database (install pgvector on "
                    "the server, then run `notespace db upgrade`)"
                )
            connection.execute(text(PARENT_DDL))

    def ensure_partition(self, model_version_id: int, dim: int, *, with_index: bool = True) -> None:
        """The version's partition, its dimension check and (unless told not to, for a bulk
        load that indexes afterwards) its HNSW index. Idempotent; safe from several replicas."""
        name, dim = partition_name(model_version_id), int(dim)
        with self._engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
            connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT_TABLE} "
                    f"(CONSTRAINT {name}_dim CHECK (vector_dims(embedding) = {dim})) "
                    f"FOR VALUES IN ({int(model_version_id)})"
                )
            )
            if with_index:
                # Inner product on unit vectors is cosine, as the FAISS index scores.
                connection.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS {name}_hnsw ON {name} USING hnsw "
                        f"((embedding::halfvec({dim})) halfvec_ip_ops) "
                        f"WITH (m = {int(self.config.hnsw_m)}, "
                        f"ef_construction = {int(self.config.ef_construction)})"
                    )
                )

    def copy_from_log(self, model_version_id: int, dim: int, batch_rows: int = 4096) -> int:
        """Copy the version's current vectors from the vector log (note_vectors) that its
        partition lacks: a database that ran the FAISS store before switching, or a partition
        dropped by hand. Returns rows copied; 0 (one probe) when nothing is missing."""
        copied, after = 0, 0
        while True:
            with self._engine.begin() as connection:
                rows = connection.execute(
                    select(NoteVector.note_id, NoteVector.vector)
                    .where(
                        NoteVector.model_version_id == model_version_id,
                        NoteVector.vector.is_not(None),
                        NoteVector.note_id > after,
                        ~exists().where(
                            _embeddings.c.model_version_id == model_version_id,
                            _embeddings.c.note_id == NoteVector.note_id,
                        ),
                    )
                    .order_by(NoteVector.note_id)
                    .limit(batch_rows)
                ).all()
                if not rows:
                    return copied
                vectors = decode_vectors([r[1] for r in rows if r[1] is not None], dim)
                # keep_existing: a note written meanwhile (another replica serving this
                # version) already has its newer vector in the partition.
                self.put(
                    connection,
                    [(int(r[0]), model_version_id, v) for r, v in zip(rows, vectors, strict=True)],
                    keep_existing=True,
                )
            copied += len(rows)
            after = int(rows[-1][0])

    # -- writes, inside the caller's transaction ---------------------------------------------
    def put(
        self,
        session: Session | Connection,
        rows: Sequence[tuple[int, int, Vectors]],
        *,
        keep_existing: bool = False,
    ) -> None:
        """Insert or replace (note id, model version id, vector) rows (`keep_existing`: leave
        a row already there as it is)."""
        if not rows:
            return
        statement = text(
            "INSERT INTO note_embeddings (model_version_id, note_id, embedding) "
            "VALUES (:model_version_id, :note_id, :embedding) "
            "ON CONFLICT (model_version_id, note_id) DO NOTHING"
            if keep_existing
            else "INSERT INTO note_embeddings (model_version_id, note_id, embedding) "
            "VALUES (:model_version_id, :note_id, :embedding) "
            "ON CONFLICT (model_version_id, note_id) DO UPDATE SET embedding = EXCLUDED.embedding"
        )
        session.execute(
            statement.bindparams(bindparam("embedding", type_=HalfVec())),
            [
                {"note_id": note_id, "model_version_id": model_id, "embedding": vector}
                for note_id, model_id, vector in rows
            ],
        )

    def remove(self, session: Session, rows: Sequence[tuple[int, int]]) -> None:
        """Drop (note id, model version id) rows; by both keys, so each is a primary-key probe
        of one partition rather than a scan of every partition."""
        if not rows:
            return
        session.execute(
            text(
                "DELETE FROM note_embeddings "
                "WHERE model_version_id = :model_version_id AND note_id = :note_id"
            ),
            [{"note_id": note_id, "model_version_id": model_id} for note_id, model_id in rows],
        )

    # -- reads -----------------------------------------------------------------------------
    def search(
        self, model_version_id: int, dim: int, queries: Vectors, k: int, filters: NoteFilters
    ) -> SearchResult:
        """Top-k by inner product among live notes matching `filters`, one statement a query."""
        conditions = filter_conditions(filters, "postgresql")
        scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((queries.shape[0], k), MISSING_ID, dtype=np.int64)
        with self._read() as session, session.begin():
            exact = self._matches_at_most(session, conditions, self.config.exact_max_rows)
            if not exact:
                self._walk_the_graph(session)
            for row, query in enumerate(queries):
                found = session.execute(
                    self._statement(model_version_id, dim, query, k, conditions, exact=exact)
                ).all()
                if not exact and len(found) < k:
                    # More than exact_max_rows notes match, yet the walk stopped short of k
                    # (hnsw.max_scan_tuples reached: a very selective filter on a large
                    # partition): score the filtered notes exactly, as FAISS does.
                    session.execute(select(func.set_config("enable_sort", "on", True)))
                    found = session.execute(
                        self._statement(model_version_id, dim, query, k, conditions, exact=True)
                    ).all()
                    self._walk_the_graph(session)
                for rank, (note_id, distance) in enumerate(found):
                    ids[row, rank], scores[row, rank] = int(note_id), -float(distance)
        return SearchResult(scores=scores, ids=ids)

    def _walk_the_graph(self, session: Session) -> None:
        """Settings for this transaction only: iterative scans keep walking until k rows pass
        the filter, and sorting is priced out so the planner takes the ordered HNSW scan we
        chose rather than a join-then-sort it may misjudge as cheaper."""
        session.execute(
            select(
                func.set_config("hnsw.ef_search", str(self.config.ef_search), True),
                func.set_config("hnsw.iterative_scan", "relaxed_order", True),
                func.set_config("enable_sort", "off", True),
            )
        )

    def _matches_at_most(
        self, session: Session, conditions: list[ColumnElement[bool]], limit: int
    ) -> bool:
        # Counting stops at limit + 1 rows, so this costs at most that many index entries.
        capped = select(Note.id).where(*conditions).limit(limit + 1).subquery()
        count = session.scalar(select(func.count()).select_from(capped)) or 0
        return count <= limit

    def _statement(
        self,
        model_version_id: int,
        dim: int,
        query: Vectors,
        k: int,
        conditions: list[ColumnElement[bool]],
        *,
        exact: bool,
    ) -> Any:
        embedding = _embeddings.c.embedding
        if exact:
            # Not the indexed expression (embedding::halfvec(dim)), so the planner scores
            # every filtered row instead of walking the graph.
            distance = embedding.op("<#>", return_type=Float())(
                bindparam("query", query, type_=HalfVec())
            )
        else:
            indexed = cast(embedding, HalfVec(dim))
            distance = indexed.op("<#>", return_type=Float())(
                bindparam("query", query, type_=HalfVec(dim))
            )
        nearest = (
            select(_embeddings.c.note_id, distance.label("distance"))
            .join(Note, Note.id == _embeddings.c.note_id)
            .where(_embeddings.c.model_version_id == model_version_id, *conditions)
            .order_by(distance)
            .limit(k)
        )
        if exact:
            return nearest
        # relaxed_order may return the k rows slightly out of order: sort them again, by an
        # expression the planner cannot see is already "sorted" (pgvector's own advice).
        hits = nearest.cte("hits").prefix_with("MATERIALIZED")
        return select(hits.c.note_id, hits.c.distance).order_by(hits.c.distance + 0)

    def stats(self, model_version_id: int) -> PartitionStats | None:
        """The version's partition (None: it has none yet). Counts its rows: seconds at
        tens of millions, so for statistics calls, not per request."""
        name = partition_name(model_version_id)
        with self._read() as session:
            if session.scalar(select(func.to_regclass(name))) is None:
                return None
            rows = session.scalar(select(func.count()).select_from(table(name))) or 0
            size = session.scalar(select(func.pg_total_relation_size(name))) or 0
            indexed = session.scalar(select(func.to_regclass(f"{name}_hnsw"))) is not None
        return PartitionStats(rows=int(rows), bytes=int(size), has_index=indexed)
