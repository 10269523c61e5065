"""Property: after any sequence of upserts and removes, the index holds exactly the model's rows.

Guards the position bookkeeping (flat removal shifts positions; HNSW tombstones, rebuilds).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.index.faiss_index import FaissVectorIndex, IndexConfig
from tests.support.index_data import clustered_vectors

DIM = 8
POOL = clustered_vectors(64, DIM, seed=31)  # vector i is always POOL[i]

operations = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "remove"]),
        st.lists(st.integers(0, 40), min_size=1, max_size=12),  # row ids
        st.integers(0, 63),  # first vector of the batch
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(
    ops=operations,
    kind=st.sampled_from(["flat", "hnsw", "auto"]),
    allowed=st.lists(st.integers(0, 40), max_size=10),
)
def test_index_matches_a_dict_model(
    ops: list[tuple[str, list[int], int]], kind: str, allowed: list[int]
) -> None:
    index = FaissVectorIndex(
        DIM,
        IndexConfig(kind=kind, hnsw_min_rows=10, compact_dead_fraction=0.3),  # type: ignore[arg-type]
    )
    model: dict[int, int] = {}  # row id → POOL row
    for op, ids, first in ops:
        id_array = np.array(ids, dtype=np.int64)
        if op == "upsert":
            rows = [(first + offset) % 64 for offset in range(len(ids))]
            index.upsert(id_array, POOL[rows])
            model.update(zip(ids, rows, strict=True))  # later duplicates win, as in the index
        else:
            assert index.remove(id_array) == len(set(ids) & set(model))
            for row_id in ids:
                model.pop(row_id, None)
    assert len(index) == len(model)

    # Each live id, searched by its own vector with a filter on itself, comes back exactly.
    for row_id, row in model.items():
        result = index.search(POOL[row : row + 1], 1, allowed=np.array([row_id]))
        assert result.ids[0, 0] == row_id
        assert abs(result.scores[0, 0] - 1.0) < 1e-5  # float32 unit vectors

    # A filtered search over the whole live set returns exactly the allowed live ids.
    query = POOL[:1]
    hits = index.search(query, 64, allowed=np.array(allowed, dtype=np.int64)).hits(0)
    assert sorted(row_id for row_id, _ in hits) == sorted(set(allowed) & set(model))
    everything = index.search(query, 64).hits(0)
    if kind == "flat" or len(model) < 10:
        assert sorted(row_id for row_id, _ in everything) == sorted(model)
    else:
        assert {row_id for row_id, _ in everything} <= set(model)
