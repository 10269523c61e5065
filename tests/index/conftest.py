"""Index tests run FAISS single-threaded: on a shared 2-core box its OpenMP team spins against
other processes and builds an HNSW graph about 8x slower than one thread does."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import pytest


@pytest.fixture(autouse=True, scope="session")
def _faiss_single_threaded() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
