"""Benchmark the FAISS index layer: recall@k vs exact, queries/s, build, memory, snapshots.

Vectors are a Gaussian mixture on a random low-rank subspace, normalised (clustered, with an
intrinsic dimension well below 384, as text embeddings are); uniform random unit vectors
have no neighbourhood structure and make any ANN look meaningless.

    python bench/index_bench.py --n 100000
    python bench/index_bench.py --n 1000000 --queries 200 --flat-queries 50

Queries are timed one per call (the serving pattern: one search request, one query), in a
single thread. Figures go to stdout as a table; see docs/index_benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from service.index.faiss_index import FaissVectorIndex, IndexConfig
from service.index.snapshot import load_snapshot, write_snapshot

Vectors = npt.NDArray[np.float32]
_CHUNK_ROWS = 100_000


def clustered(
    n: int, dim: int, seed: int, *, clusters: int, latent_dim: int, spread: float
) -> Vectors:
    basis = np.random.default_rng(0).standard_normal((latent_dim, dim)).astype(np.float32)
    centres = np.random.default_rng(1).standard_normal((clusters, latent_dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, _CHUNK_ROWS):
        rows = min(_CHUNK_ROWS, n - start)
        latent = centres[rng.integers(0, clusters, rows)]
        latent += spread * rng.standard_normal((rows, latent_dim), dtype=np.float32)
        x = latent @ basis + 0.1 * rng.standard_normal((rows, dim), dtype=np.float32)
        out[start : start + rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_at_k(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def per_query(
    search: Callable[[Vectors], npt.NDArray[np.int64]], queries: Vectors
) -> tuple[npt.NDArray[np.int64], float]:
    """Run queries one per call; returns the ids and queries/s."""
    found = []
    started = time.perf_counter()
    for row in range(queries.shape[0]):
        found.append(search(queries[row : row + 1]))
    elapsed = time.perf_counter() - started
    return np.concatenate(found), queries.shape[0] / elapsed


def build(
    kind: str, ids: npt.NDArray[np.int64], x: Vectors, config: IndexConfig
) -> tuple[FaissVectorIndex, float, int]:
    index = FaissVectorIndex(x.shape[1], config)
    started = time.perf_counter()
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        index.upsert(ids[start : start + _CHUNK_ROWS], x[start : start + _CHUNK_ROWS])
    seconds = time.perf_counter() - started
    assert index.kind == kind
    stats = index.stats()
    return index, seconds, stats.faiss_bytes + stats.id_map_bytes


def write_latency(index: FaissVectorIndex, ids: npt.NDArray[np.int64], x: Vectors) -> str:
    """Single-row replace-upserts then deletes, as post-commit applies arrive one by one."""
    rows = 100
    started = time.perf_counter()
    for row in range(rows):
        index.upsert(ids[row : row + 1], x[-1 - row : x.shape[0] - row])
    upsert_ms = (time.perf_counter() - started) / rows * 1e3
    started = time.perf_counter()
    for row in range(rows, 2 * rows):
        index.remove(ids[row : row + 1])
    delete_ms = (time.perf_counter() - started) / rows * 1e3
    return f"single-row upsert (replace) {upsert_ms:.2f} ms, delete {delete_ms:.2f} ms"


def sibling(index: FaissVectorIndex, config: IndexConfig) -> FaissVectorIndex:
    """A second wrapper over the same FAISS object with other search settings (read-only
    use only: the bench never writes to either)."""
    with index.frozen() as frozen:
        return FaissVectorIndex.from_faiss(frozen.faiss_index, frozen.position_ids, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000, help="HNSW / filtered queries")
    parser.add_argument("--flat-queries", type=int, default=200, help="exact flat queries")
    parser.add_argument("--sweep-queries", type=int, default=200, help="filter sweep queries")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--latent-dim", type=int, default=48)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--hnsw-m", type=int, default=IndexConfig.hnsw_m)
    parser.add_argument("--ef-construction", type=int, default=IndexConfig.ef_construction)
    parser.add_argument("--ef-search", type=str, default="16,32,64,128")
    parser.add_argument("--filter", type=float, default=0.01, help="allowed fraction")
    parser.add_argument("--omp-threads", type=int, default=1)
    parser.add_argument("--snapshot-dir", type=Path, default=None)
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.omp_threads)
    k, n = args.k, args.n
    print(
        f"# n={n} dim={args.dim} queries={args.queries} flat_queries={args.flat_queries} "
        f"k={k} clusters={args.clusters} latent_dim={args.latent_dim} spread={args.spread} "
        f"M={args.hnsw_m} efConstruction={args.ef_construction} filter={args.filter} "
        f"omp_threads={args.omp_threads} cpus={os.cpu_count()} "
        f"faiss={faiss.__version__} numpy={np.__version__} python={platform.python_version()}",
        flush=True,
    )
    rows: list[tuple[str, str, str, str]] = []

    def report(name: str, recall: str, qps: str, note: str = "") -> None:
        rows.append((name, recall, qps, note))
        print(f"{name:<42} {recall:>10} {qps:>10}  {note}", flush=True)

    bench_started = started = time.perf_counter()
    x = clustered(
        n, args.dim, 11, clusters=args.clusters, latent_dim=args.latent_dim, spread=args.spread
    )
    queries = clustered(
        args.queries,
        args.dim,
        12,
        clusters=args.clusters,
        latent_dim=args.latent_dim,
        spread=args.spread,
    )
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # sparse row keys, as after deletes
    rng = np.random.default_rng(13)
    allowed_mask = rng.random(n) < args.filter
    allowed = ids[allowed_mask]
    print(
        f"# data generated in {time.perf_counter() - started:.1f} s; "
        f"filter allows {allowed.shape[0]} ids",
        flush=True,
    )
    print(f"{'index / search':<42} {'recall@' + str(k):>10} {'queries/s':>10}  note")

    # Exact flat: the reference, and the ground truth (one batched BLAS search).
    flat, flat_s, flat_bytes = build("flat", ids, x, IndexConfig(kind="flat"))
    truth = flat.search(queries, k).ids
    subset = x[allowed_mask]
    truth_filtered = allowed[np.argsort(-(queries @ subset.T), axis=1)[:, :k]]
    _, qps = per_query(lambda q, index=flat: index.search(q, k).ids, queries[: args.flat_queries])
    report(
        "flat exact",
        "1.000",
        f"{qps:.1f}",
        f"build {flat_s:.1f} s, {flat_bytes / n:.0f} B/vector in memory",
    )
    found, qps = per_query(lambda q, index=flat: index.search(q, k, allowed=allowed).ids, queries)
    report(
        f"flat, {args.filter:.0%} filter (exact gather)",
        f"{recall_at_k(found, truth_filtered):.3f}",
        f"{qps:.1f}",
    )
    report("flat writes", "", "", write_latency(flat, ids, x))
    del flat
    gc.collect()

    config = IndexConfig(kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
    hnsw, hnsw_s, hnsw_bytes = build("hnsw", ids, x, config)
    report(
        "hnsw build",
        "",
        "",
        f"{hnsw_s:.1f} s ({n / hnsw_s:.0f} vectors/s), {hnsw_bytes / n:.0f} B/vector in memory",
    )
    for ef in (int(value) for value in args.ef_search.split(",")):
        hnsw_ef = sibling(hnsw, IndexConfig(kind="hnsw", ef_search=ef))
        found, qps = per_query(lambda q, index=hnsw_ef: index.search(q, k).ids, queries)
        report(f"hnsw efSearch={ef}", f"{recall_at_k(found, truth):.3f}", f"{qps:.1f}")
    found, qps = per_query(lambda q, index=hnsw: index.search(q, k, allowed=allowed).ids, queries)
    report(
        f"hnsw, {args.filter:.0%} filter (default: exact gather)",
        f"{recall_at_k(found, truth_filtered):.3f}",
        f"{qps:.1f}",
    )
    graph_only = sibling(
        hnsw, IndexConfig(kind="hnsw", exact_filter_max_rows=0, exact_filter_max_fraction=0.0)
    )
    found, qps = per_query(
        lambda q, index=graph_only: index.search(q, k, allowed=allowed).ids, queries
    )
    report(
        f"hnsw, {args.filter:.0%} filter (forced IDSelector)",
        f"{recall_at_k(found, truth_filtered):.3f}",
        f"{qps:.1f}",
        "efSearch scaled by 1/selectivity, capped 1024",
    )
    # Where the exact path stops paying: both paths forced, across selectivities.
    exact_only = sibling(hnsw, IndexConfig(kind="hnsw", exact_filter_max_rows=n))
    sweep = queries[: args.sweep_queries]
    for fraction in (0.01, 0.02, 0.03, 0.05, 0.2, 0.5):
        mask = rng.random(n) < fraction
        subset_ids = ids[mask]
        sweep_truth = subset_ids[np.argsort(-(sweep @ x[mask].T), axis=1)[:, :k]]
        for label, index in (("exact gather", exact_only), ("IDSelector", graph_only)):
            found, qps = per_query(
                lambda q, index=index, allowed=subset_ids: index.search(q, k, allowed=allowed).ids,
                sweep,
            )
            report(
                f"hnsw, {fraction:.0%} filter, forced {label}",
                f"{recall_at_k(found, sweep_truth):.3f}",
                f"{qps:.1f}",
            )
    del graph_only, hnsw_ef, exact_only

    report("hnsw writes", "", "", write_latency(hnsw, ids, x))
    live_rows = len(hnsw)

    with tempfile.TemporaryDirectory(dir=args.snapshot_dir) as tmp:
        path = Path(tmp) / "bench.nsidx"
        started = time.perf_counter()
        write_snapshot(path, hnsw, model_ref="bench@1", sequence_watermark=1)
        write_s = time.perf_counter() - started
        size = path.stat().st_size
        del hnsw
        gc.collect()
        started = time.perf_counter()
        loaded, _ = load_snapshot(path, model_ref="bench@1", dim=args.dim, config=config)
        load_s = time.perf_counter() - started
        assert len(loaded) == live_rows
        report(
            "snapshot",
            "",
            "",
            f"write {write_s:.1f} s, load+verify {load_s:.1f} s, {size / n:.0f} B/vector "
            f"on disk ({size / 2**20:.0f} MiB)",
        )
    print(f"# total {time.perf_counter() - bench_started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
