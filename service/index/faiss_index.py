"""The FAISS `VectorIndex`: exact flat search for small collections, HNSW for large ones.

Row keys are mapped to FAISS positions here rather than by `IndexIDMap2`: HNSW cannot remove
vectors, so a deleted or replaced row becomes a tombstone (its position maps to `MISSING_ID`)
and searches exclude tombstones with a position bitmap (`IDSelectorBitmap`); when tombstones
pass `compact_dead_fraction` the index is rebuilt from the live vectors. Flat indexes use
tombstones too: a real `remove_ids` moves the whole tail of the array and renumbers every
later position (measured 12 ms per single-row delete at 50k rows, all under the exclusive
lock), while a flat compaction is one memcpy-speed pass amortised over many deletes.
Filtered searches over a small allowed set are answered exactly from the allowed vectors
alone, because HNSW with a selective filter walks mostly excluded nodes and loses recall.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from service.index.base import MISSING_ID, RowIds, SearchResult, Vectors
from service.index.rwlock import ReadWriteLock

# The stubs bundled with faiss-cpu lack SearchParametersHNSW and the numpy-array overloads
# its Python wrappers add (IDSelectorBitmap(array), SearchParameters(sel=...)).
_faiss: Any = faiss

IndexKind = Literal["auto", "flat", "hnsw"]
BuiltKind = Literal["flat", "hnsw"]

# Rows moved per reconstruct → add step while rebuilding, so a rebuild holds one chunk of
# vectors in Python memory (96 MiB at dim 384) rather than a second copy of the collection.
_REBUILD_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class IndexConfig:
    """Index shape and search trade-offs; defaults come from bench/index_bench.py (dim 384)."""

    kind: IndexKind = "auto"
    # "auto": flat below this many live rows, HNSW from here on (flat measured 4.3 ms per
    # query at 50k rows and 15 ms at 100k, dim 384, one core; HNSW 0.3 ms at 100k).
    hnsw_min_rows: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    # A filtered search is answered exactly (gather the allowed vectors, brute force) when
    # the allowed set is small in rows (speed: at 1e5 rows, dim 384, the gather ran 175 q/s
    # vs the graph's 96 at 5k allowed rows, 57 vs 101 at 20k) or in fraction (recall: the
    # graph with a filter measured recall@10 0.93 at 1%, 0.975 at 2%, 0.985 at 3%, 0.997 at
    # 5%). Figures: docs/index_benchmarks.md.
    exact_filter_max_rows: int = 10_000
    exact_filter_max_fraction: float = 0.03
    # Otherwise HNSW runs with efSearch scaled by 1/selectivity, capped here.
    filtered_ef_search_max: int = 1024
    # Rebuild once this fraction of positions are tombstones (cheap for flat, a full graph
    # build for HNSW, done while searches continue on the old index).
    compact_dead_fraction: float = 0.2
    unit_norm_tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "flat", "hnsw"):
            raise ValueError("kind must be auto, flat or hnsw")
        positive = {
            "hnsw_min_rows": self.hnsw_min_rows,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "filtered_ef_search_max": self.filtered_ef_search_max,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.exact_filter_max_rows < 0:
            raise ValueError("exact_filter_max_rows must be >= 0")
        if not 0.0 <= self.exact_filter_max_fraction <= 1.0:
            raise ValueError("exact_filter_max_fraction must be in [0, 1]")
        if not 0.0 < self.compact_dead_fraction <= 1.0:
            raise ValueError("compact_dead_fraction must be in (0, 1]")


@dataclass(frozen=True)
class IndexStats:
    kind: BuiltKind
    dim: int
    live_rows: int
    positions: int  # live rows + tombstones
    dead_fraction: float
    faiss_bytes: int  # vectors + graph, estimated from FAISS's own arrays
    id_map_bytes: int  # position → key array and key → position dict, estimated


@dataclass(frozen=True)
class FrozenIndex:
    """A consistent view for serialisation; valid only inside `FaissVectorIndex.frozen()`."""

    faiss_index: Any
    position_ids: RowIds  # [positions] row key per FAISS position, MISSING_ID for tombstones
    live_rows: int


class FaissVectorIndex:
    """`VectorIndex` over FAISS; many concurrent searches, writes serialised."""

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self._dim = dim
        self._config = config or IndexConfig()
        self._index: Any = _new_faiss(
            dim, "hnsw" if self._config.kind == "hnsw" else "flat", self._config
        )
        self._ids: RowIds = np.empty(0, dtype=np.int64)  # capacity-grown; [:ntotal] is valid
        self._pos: dict[int, int] = {}  # live row key → FAISS position
        self._alive_bits: npt.NDArray[np.uint8] | None = None  # cached tombstone filter
        self._rw = ReadWriteLock()  # guards the FAISS object and the maps
        self._writer = threading.Lock()  # serialises writers, rebuilds and snapshots

    @classmethod
    def from_faiss(
        cls, faiss_index: Any, position_ids: RowIds, config: IndexConfig | None = None
    ) -> FaissVectorIndex:
        """Adopt a deserialised FAISS index and its position → row-key map."""
        kind = _kind_of(faiss_index)
        if faiss_index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("index metric is not inner product")
        if position_ids.ndim != 1 or position_ids.shape[0] != faiss_index.ntotal:
            raise ValueError("position map length does not match the index")
        self = cls(int(faiss_index.d), config)
        live = np.flatnonzero(position_ids != MISSING_ID)
        pos = dict(zip(position_ids[live].tolist(), live.tolist(), strict=True))
        if len(pos) != live.shape[0]:
            raise ValueError("position map repeats a row key")
        if kind == "hnsw":
            faiss_index.hnsw.efSearch = self._config.ef_search
        self._index = faiss_index
        self._ids = np.array(position_ids, dtype=np.int64, copy=True)
        self._pos = pos
        return self

    # -- VectorIndex -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> Literal["inner_product"]:
        return "inner_product"

    @property
    def kind(self) -> BuiltKind:
        return _kind_of(self._index)

    def __len__(self) -> int:
        return len(self._pos)

    def stats(self) -> IndexStats:
        with self._rw.read():
            total = int(self._index.ntotal)
            live = len(self._pos)
            return IndexStats(
                kind=self.kind,
                dim=self._dim,
                live_rows=live,
                positions=total,
                dead_fraction=(total - live) / total if total else 0.0,
                faiss_bytes=_faiss_bytes(self._index),
                # A dict slot is ~3 words at 2/3 load; key and value ints are 32 bytes each.
                id_map_bytes=int(self._ids.nbytes + sys.getsizeof(self._pos) + 64 * live),
            )

    def upsert(self, ids: RowIds, vectors: Vectors) -> None:
        ids, vectors = self._check_rows(ids, vectors)
        if ids.shape[0] == 0:
            return
        with self._writer:
            with self._rw.write():
                self._drop(ids)
                self._append(ids, vectors)
            self._maintain()

    def remove(self, ids: RowIds) -> int:
        ids = _check_ids(ids)
        with self._writer:
            with self._rw.write():
                removed = self._drop(ids)
            self._maintain()
        return removed

    def search(self, queries: Vectors, k: int, allowed: RowIds | None = None) -> SearchResult:
        queries = self._check_queries(queries)
        if k < 1:
            raise ValueError("k must be >= 1")
        allowed_ids = None if allowed is None else _check_ids(allowed)
        with self._rw.read():
            if allowed_ids is None:
                scores, positions = self._search_all(queries, k)
            else:
                scores, positions = self._search_allowed(queries, k, allowed_ids)
            # A rebuild renumbers positions: translate under the lock the search ran under.
            ids = _positions_to_ids(self._ids, positions)
        scores = np.where(ids == MISSING_ID, -np.inf, scores).astype(np.float32)
        return SearchResult(scores=scores, ids=ids)

    # -- maintenance and snapshots -----------------------------------------------------------

    @contextmanager
    def frozen(self) -> Iterator[FrozenIndex]:
        """Hold writes off (searches continue) while the caller serialises the index."""
        # Taking the writer mutex first keeps writers queued on it rather than on the
        # readers-writer lock, where a waiting writer would stall every new search.
        with self._writer, self._rw.read():
            total = int(self._index.ntotal)
            yield FrozenIndex(self._index, self._ids[:total], len(self._pos))

    # -- internals (callers hold the locks named) ----------------------------------------------

    def _check_rows(self, ids: RowIds, vectors: Vectors) -> tuple[RowIds, Vectors]:
        ids = _check_ids(ids)
        vectors = self._check_vectors(vectors, "vectors")
        if vectors.shape[0] != ids.shape[0]:
            raise ValueError("ids and vectors differ in length")
        # A batch naming one id twice keeps its last vector, as sequential upserts would.
        _, last_from_end = np.unique(ids[::-1], return_index=True)
        keep = np.sort(ids.shape[0] - 1 - last_from_end)
        if keep.shape[0] != ids.shape[0]:
            ids, vectors = ids[keep], vectors[keep]
        return ids, vectors

    def _check_queries(self, queries: Vectors) -> Vectors:
        return self._check_vectors(queries, "queries")

    def _check_vectors(self, vectors: Vectors, name: str) -> Vectors:
        array = np.ascontiguousarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self._dim:
            raise ValueError(f"{name} must have shape [N, {self._dim}]")
        norms = np.linalg.norm(array, axis=1)
        if array.shape[0] and not bool(
            np.all(np.abs(norms - 1.0) <= self._config.unit_norm_tolerance)
        ):
            raise ValueError(f"{name} must be finite and unit length")
        return array

    def _drop(self, ids: RowIds) -> int:
        """Forget `ids` (rw write lock held): their positions become tombstones."""
        pop = self._pos.pop
        found = [p for p in map(pop, ids.tolist(), [None] * ids.shape[0]) if p is not None]
        if not found:
            return 0
        self._ids[np.array(found, dtype=np.int64)] = MISSING_ID
        self._alive_bits = None
        return len(found)

    def _append(self, ids: RowIds, vectors: Vectors) -> None:
        """Add rows not present (rw write lock held)."""
        start = int(self._index.ntotal)
        end = start + ids.shape[0]
        if end > self._ids.shape[0]:
            grown = np.empty(max(end, 2 * self._ids.shape[0], 1024), dtype=np.int64)
            grown[:start] = self._ids[:start]
            self._ids = grown
        self._index.add(vectors)
        self._ids[start:end] = ids
        self._pos.update(zip(ids.tolist(), range(start, end), strict=True))
        self._alive_bits = None

    def _target_kind(self, live_rows: int, *, shrink: bool) -> BuiltKind:
        if self._config.kind != "auto":
            return self._config.kind
        if live_rows >= self._config.hnsw_min_rows:
            return "hnsw"
        # Hysteresis: a graph is only given up on a rebuild, and well below the threshold,
        # so a collection hovering around it does not flip kind on every write.
        if self.kind == "hnsw" and not (shrink and live_rows < self._config.hnsw_min_rows // 2):
            return "hnsw"
        return "flat"

    def _maintain(self) -> None:
        """Grow flat → HNSW, or drop tombstones (writer mutex held)."""
        live, total = len(self._pos), int(self._index.ntotal)
        if self.kind == "flat" and self._target_kind(live, shrink=False) == "hnsw":
            self._rebuild("hnsw")
        elif total and (total - live) / total > self._config.compact_dead_fraction:
            self._rebuild(self._target_kind(live, shrink=True))

    def _rebuild(self, kind: BuiltKind) -> None:
        """Build a fresh index from the live rows while searches go on against the old one.

        Needs only the writer mutex: nothing else mutates meanwhile, so reading the old
        index without the rw lock is safe; the swap takes the write lock briefly.
        """
        total = int(self._index.ntotal)
        live_positions = np.flatnonzero(self._ids[:total] != MISSING_ID)
        fresh = _new_faiss(self._dim, kind, self._config)
        for start in range(0, live_positions.shape[0], _REBUILD_CHUNK_ROWS):
            chunk = live_positions[start : start + _REBUILD_CHUNK_ROWS]
            fresh.add(self._index.reconstruct_batch(chunk))
        ids = self._ids[live_positions].copy()
        pos = dict(zip(ids.tolist(), range(ids.shape[0]), strict=True))
        with self._rw.write():
            self._index, self._ids, self._pos, self._alive_bits = fresh, ids, pos, None

    def _search_all(self, queries: Vectors, k: int) -> tuple[Vectors, RowIds]:
        live, total = len(self._pos), int(self._index.ntotal)
        if live == 0:
            return _empty(queries.shape[0], k)
        if live == total:
            if self.kind == "flat":
                scores, positions = self._index.search(queries, k)
            else:
                params = _faiss.SearchParametersHNSW(efSearch=max(self._config.ef_search, k))
                scores, positions = self._index.search(queries, k, params=params)
            return scores, positions
        bits = self._alive_bits
        if bits is None:
            bits = self._alive_bits = _bitmap(
                np.flatnonzero(self._ids[:total] != MISSING_ID), total
            )
        if self.kind == "flat":
            params = _faiss.SearchParameters(sel=_faiss.IDSelectorBitmap(bits))
            scores, positions = self._index.search(queries, k, params=params)
            return scores, positions
        return self._filtered_hnsw(queries, k, bits, live, live / total)

    def _search_allowed(self, queries: Vectors, k: int, allowed: RowIds) -> tuple[Vectors, RowIds]:
        get = self._pos.get
        found = [p for p in map(get, np.unique(allowed).tolist()) if p is not None]
        positions = np.array(found, dtype=np.int64)
        allowed_rows, live = positions.shape[0], len(self._pos)
        if allowed_rows == 0:
            return _empty(queries.shape[0], k)
        config = self._config
        if (
            allowed_rows <= config.exact_filter_max_rows
            or allowed_rows <= config.exact_filter_max_fraction * live
        ):
            return self._exact(queries, k, positions)
        bits = _bitmap(positions, int(self._index.ntotal))
        if self.kind == "flat":
            # Flat + selector is still exact: FAISS scores only the selected rows.
            params = _faiss.SearchParameters(sel=_faiss.IDSelectorBitmap(bits))
            scores, found_positions = self._index.search(queries, k, params=params)
            return scores, found_positions
        return self._filtered_hnsw(
            queries, k, bits, allowed_rows, allowed_rows / int(self._index.ntotal), positions
        )

    def _filtered_hnsw(
        self,
        queries: Vectors,
        k: int,
        bits: npt.NDArray[np.uint8],
        matching_rows: int,
        selectivity: float,
        positions: RowIds | None = None,
    ) -> tuple[Vectors, RowIds]:
        # The graph walk still visits excluded nodes; widening the beam by 1/selectivity
        # keeps about as many admissible candidates as an unfiltered search would see.
        ef = math.ceil(max(self._config.ef_search, k) / max(selectivity, 1e-9))
        ef = min(max(ef, k), max(self._config.filtered_ef_search_max, k))
        selector = _faiss.IDSelectorBitmap(bits)
        params = _faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        scores, found = self._index.search(queries, k, params=params)
        # A walk that dead-ends short of k admissible hits falls back to exact for that row.
        short = np.flatnonzero(np.any(found < 0, axis=1))
        if short.shape[0] and matching_rows >= k:
            if positions is None:
                total = int(self._index.ntotal)
                positions = np.flatnonzero(self._ids[:total] != MISSING_ID)
            exact_scores, exact_found = self._exact(queries[short], k, positions)
            scores[short], found[short] = exact_scores, exact_found
        return scores, found

    def _exact(self, queries: Vectors, k: int, positions: RowIds) -> tuple[Vectors, RowIds]:
        """Brute force over `positions` only: one gather, then FAISS's exact k-NN."""
        # Gathering through FAISS costs no standing memory (no second float32 copy of the
        # collection) and measured as fast as fancy-indexing a numpy copy. faiss.knn rather
        # than a numpy matmul: numpy's threaded OpenBLAS, next to FAISS's OpenMP team on a
        # small box, measured 10-15x slower on these [1, 384] x [384, 4000] products.
        vectors = self._index.reconstruct_batch(positions)  # [M, D]
        scores, found = _faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        return scores, np.where(found >= 0, positions[np.maximum(found, 0)], MISSING_ID)


def _new_faiss(dim: int, kind: BuiltKind, config: IndexConfig) -> Any:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    return index


def _faiss_bytes(index: Any) -> int:
    vectors = int(index.ntotal) * int(index.d) * 4
    if not isinstance(index, faiss.IndexHNSWFlat):
        return vectors
    graph: Any = index.hnsw  # the bundled stubs omit the graph arrays
    links = int(graph.neighbors.size()) + int(graph.levels.size())
    return vectors + 4 * links + 8 * int(graph.offsets.size())


def _kind_of(index: Any) -> BuiltKind:
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"unsupported FAISS index type {type(index).__name__}")


def _check_ids(ids: RowIds) -> RowIds:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.shape[0] and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError("ids must be a 1-D integer array")
    array = array.astype(np.int64, copy=False)
    if array.shape[0] and int(array.min()) < 0:
        raise ValueError("ids must be >= 0")
    return array


def _positions_to_ids(position_ids: RowIds, positions: RowIds) -> RowIds:
    if position_ids.shape[0] == 0:
        return np.full(positions.shape, MISSING_ID, dtype=np.int64)
    found = position_ids[np.maximum(positions, 0)]
    return np.where(positions >= 0, found, MISSING_ID)


def _bitmap(positions: RowIds, total: int) -> npt.NDArray[np.uint8]:
    """The bit-per-position layout `faiss.IDSelectorBitmap` reads (bit i of byte i // 8)."""
    mask = np.zeros(total, dtype=bool)
    mask[positions] = True
    return np.packbits(mask, bitorder="little")


def _empty(rows: int, k: int) -> tuple[Vectors, RowIds]:
    return (
        np.full((rows, k), -np.inf, dtype=np.float32),
        np.full((rows, k), MISSING_ID, dtype=np.int64),
    )
