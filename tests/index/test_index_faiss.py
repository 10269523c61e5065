"""FaissVectorIndex against a float64 numpy brute force: recall, upsert, delete, filters."""

from __future__ import annotations

import numpy as np
import pytest

from service.index.base import MISSING_ID, VectorIndex
from service.index.faiss_index import FaissVectorIndex, IndexConfig
from tests.support.index_data import brute_force, clustered_vectors, recall

DIM = 32
K = 10


def _ids(n: int) -> np.ndarray:
    # Sparse, non-contiguous keys, as DB row keys become after deletes.
    return np.arange(n, dtype=np.int64) * 7 + 1000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = clustered_vectors(6000, DIM, seed=1)
    queries = clustered_vectors(100, DIM, seed=2)
    return _ids(6000), vectors, queries


def _built(kind: str, ids: np.ndarray, vectors: np.ndarray, **config: object) -> FaissVectorIndex:
    index = FaissVectorIndex(DIM, IndexConfig(kind=kind, **config))  # type: ignore[arg-type]
    index.upsert(ids, vectors)
    return index


def test_satisfies_the_protocol() -> None:
    index: VectorIndex = FaissVectorIndex(DIM)
    assert index.dim == DIM and index.metric == "inner_product" and len(index) == 0


def test_flat_is_exact_and_hnsw_recall_is_high(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    truth = brute_force(queries, vectors, ids, K)
    flat = _built("flat", ids, vectors)
    hnsw = _built("hnsw", ids, vectors)
    assert flat.kind == "flat" and hnsw.kind == "hnsw"
    flat_result = flat.search(queries, K)
    assert recall(flat_result.ids, truth) == 1.0
    # Scores are inner products of unit float32 vectors: tolerance 1e-5.
    expected = np.take_along_axis(queries @ vectors.T, (truth - 1000) // 7, axis=1)
    np.testing.assert_allclose(flat_result.scores, expected, atol=1e-5)
    assert recall(hnsw.search(queries, K).ids, truth) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_upsert_replaces_and_remove_removes(kind: str, data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, _ = data
    index = _built(kind, ids[:2000], vectors[:2000])
    # Move ids[0] onto the vector of ids[1999]'s neighbour: a search there must find it.
    moved = vectors[3000:3001]
    index.upsert(ids[:1], moved)
    assert len(index) == 2000
    hits = index.search(moved, 3).ids[0]
    assert hits[0] == ids[0]
    assert len(set(hits.tolist())) == 3
    # The old position is gone: searching the old vector never yields ids[0] twice or stale.
    old = index.search(vectors[:1], 2000).ids[0]
    assert np.count_nonzero(old == ids[0]) == 1

    assert index.remove(np.array([ids[0], ids[5], 999_999], dtype=np.int64)) == 2
    assert len(index) == 1998
    everything = index.search(vectors[:50], 2000).ids
    assert not np.isin(everything, [ids[0], ids[5]]).any()
    survivors = everything[everything != MISSING_ID]
    assert np.isin(survivors, ids[:2000]).all()


def test_batch_naming_an_id_twice_keeps_the_last_vector(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, _ = data
    index = _built("flat", ids[:10], vectors[:10])
    index.upsert(np.array([ids[0], ids[0]]), vectors[[20, 30]])
    assert len(index) == 10
    assert index.search(vectors[30:31], 1).ids[0, 0] == ids[0]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_filter_at_one_percent_returns_the_true_top_k(
    kind: str, data: tuple[np.ndarray, ...]
) -> None:
    ids, vectors, queries = data
    index = _built(kind, ids, vectors)
    rng = np.random.default_rng(3)
    mask = rng.random(ids.shape[0]) < 0.01
    allowed = np.concatenate([ids[mask], [123_456_789]])  # an unknown id is ignored
    result = index.search(queries, K, allowed=allowed)
    truth = brute_force(queries, vectors, ids, K, mask)
    assert recall(result.ids, truth) == 1.0
    assert np.isin(result.ids, ids[mask]).all()


def test_hnsw_filter_above_the_exact_threshold_keeps_recall(
    data: tuple[np.ndarray, ...],
) -> None:
    ids, vectors, queries = data
    # Thresholds at zero force the IDSelector path through the graph.
    index = _built("hnsw", ids, vectors, exact_filter_max_rows=0, exact_filter_max_fraction=0.0)
    for fraction in (0.02, 0.3):
        mask = np.random.default_rng(4).random(ids.shape[0]) < fraction
        result = index.search(queries, K, allowed=ids[mask])
        assert np.isin(result.ids, ids[mask]).all()
        assert (result.ids != MISSING_ID).all()  # k hits per row, falling back if needed
        assert recall(result.ids, brute_force(queries, vectors, ids, K, mask)) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_fewer_allowed_than_k_pads(kind: str, data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = _built(kind, ids[:500], vectors[:500])
    result = index.search(queries[:2], K, allowed=ids[:3])
    assert result.ids.shape == (2, K)
    assert set(result.ids[0, :3].tolist()) == set(ids[:3].tolist())
    assert (result.ids[:, 3:] == MISSING_ID).all() and np.isneginf(result.scores[:, 3:]).all()
    assert len(result.hits(0)) == 3
    empty = index.search(queries[:1], K, allowed=np.array([], dtype=np.int64))
    assert (empty.ids == MISSING_ID).all()


def test_hnsw_tombstones_are_never_returned_and_compaction_drops_them(
    data: tuple[np.ndarray, ...],
) -> None:
    ids, vectors, queries = data
    index = _built("hnsw", ids[:3000], vectors[:3000], compact_dead_fraction=0.3)
    index.remove(ids[:600])  # 20%: tombstones, no rebuild yet
    stats = index.stats()
    assert stats.positions == 3000 and stats.live_rows == 2400
    result = index.search(queries, K)
    assert not np.isin(result.ids, ids[:600]).any()
    live_mask = np.zeros(3000, dtype=bool)
    live_mask[600:] = True
    truth = brute_force(queries, vectors[:3000], ids[:3000], K, live_mask)
    assert recall(result.ids, truth) >= 0.95
    index.remove(ids[600:1000])  # past 30% dead: the graph is rebuilt without them
    stats = index.stats()
    assert stats.positions == stats.live_rows == 2000 and stats.kind == "hnsw"


def test_auto_switches_from_flat_to_hnsw_at_the_threshold(
    data: tuple[np.ndarray, ...],
) -> None:
    ids, vectors, queries = data
    index = FaissVectorIndex(DIM, IndexConfig(kind="auto", hnsw_min_rows=1000))
    index.upsert(ids[:999], vectors[:999])
    assert index.kind == "flat"
    index.upsert(ids[999:1500], vectors[999:1500])
    assert index.kind == "hnsw" and len(index) == 1500
    truth = brute_force(queries, vectors[:1500], ids[:1500], K)
    assert recall(index.search(queries, K).ids, truth) >= 0.95
    # Hysteresis: a rebuild below the threshold keeps the graph until half of it.
    index.remove(ids[:600])
    assert index.kind == "hnsw" and index.stats().positions == 900
    index.remove(ids[600:1100])
    assert index.kind == "flat" and len(index) == 400


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (np.array([1, 2]), np.ones((2, DIM), np.float32), "unit length"),
        (np.array([1]), np.ones((1, DIM + 1), np.float32), "shape"),
        (np.array([-1]), clustered_vectors(1, DIM, seed=0), ">= 0"),
        (np.array([1.5]), clustered_vectors(1, DIM, seed=0), "integer"),
        (np.array([1, 2]), clustered_vectors(1, DIM, seed=0), "differ"),
        (np.array([1]), np.full((1, DIM), np.nan, np.float32), "unit length"),
    ],
)
def test_bad_rows_are_rejected(ids: np.ndarray, vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaissVectorIndex(DIM).upsert(ids, vectors)


def test_bad_search_arguments_are_rejected() -> None:
    index = FaissVectorIndex(DIM)
    with pytest.raises(ValueError, match="k must be"):
        index.search(clustered_vectors(1, DIM, seed=0), 0)
    with pytest.raises(ValueError, match="shape"):
        index.search(clustered_vectors(1, DIM + 1, seed=0), 1)
    assert (index.search(clustered_vectors(1, DIM, seed=0), 3).ids == MISSING_ID).all()
