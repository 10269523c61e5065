"""Concurrent searches while one writer upserts, deletes, rebuilds and snapshots."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from service.index.base import MISSING_ID
from service.index.faiss_index import FaissVectorIndex, IndexConfig
from service.index.snapshot import write_snapshot
from tests.support.index_data import clustered_vectors

DIM = 16
STABLE = 2000  # rows the writer never touches: every search must keep finding them


def test_searches_stay_consistent_during_writes(tmp_path: Path) -> None:
    vectors = clustered_vectors(STABLE + 3000, DIM, seed=21)
    stable_ids = np.arange(STABLE, dtype=np.int64)
    churn_ids = np.arange(STABLE, STABLE + 3000, dtype=np.int64)
    # auto with a low threshold: the writer drives flat → HNSW, tombstones and compactions.
    index = FaissVectorIndex(
        DIM, IndexConfig(kind="auto", hnsw_min_rows=2500, compact_dead_fraction=0.1)
    )
    index.upsert(stable_ids, vectors[:STABLE])
    errors: list[BaseException] = []
    stop = threading.Event()
    self_hits = [0, 0]  # [found itself first, searches]

    def writer() -> None:
        try:
            rng = np.random.default_rng(1)
            for round_ in range(30):
                picked = rng.choice(3000, 200, replace=False)
                index.upsert(churn_ids[picked], vectors[STABLE + picked])
                index.remove(churn_ids[rng.choice(3000, 150, replace=False)])
                if round_ % 10 == 0:
                    write_snapshot(
                        tmp_path / "c.nsidx", index, model_ref="m@1", sequence_watermark=round_
                    )
        except BaseException as error:
            errors.append(error)
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                rows = rng.integers(0, STABLE, 4)
                result = index.search(vectors[rows], 10)
                for row, expected in enumerate(rows):
                    hits = result.ids[row][result.ids[row] != MISSING_ID]
                    assert len(set(hits.tolist())) == hits.shape[0] == 10
                    assert np.all(np.diff(result.scores[row]) <= 1e-6)
                    self_hits[0] += int(hits[0] == expected)
                    self_hits[1] += 1
                # A small filter takes the exact path: always the true answer.
                allowed = stable_ids[rows[0] : rows[0] + 50]
                filtered = index.search(vectors[rows[:1]], 5, allowed=allowed)
                assert filtered.ids[0, 0] == rows[0]
                found = filtered.ids[0][filtered.ids[0] != MISSING_ID]
                assert found.shape[0] == min(5, allowed.shape[0])
                assert np.isin(found, allowed).all()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert self_hits[1] > 0
    assert self_hits[0] / self_hits[1] >= 0.95  # HNSW may miss an exact self-match, rarely
    assert index.kind == "hnsw"
    assert set(index.search(vectors[:STABLE], 1).ids[:, 0].tolist()) <= set(range(STABLE + 3000))
