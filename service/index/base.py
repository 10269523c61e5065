"""The vector-index seam: what the search routes and the DB replay need from an index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
RowIds = npt.NDArray[np.int64]

# Padding for rows with fewer than k hits (fewer than k vectors match the filter).
MISSING_ID = -1


@dataclass(frozen=True)
class SearchResult:
    """Top-k per query, best first. Rows with fewer than k hits are padded with
    `MISSING_ID` and `-inf` scores, so both arrays are always [Q, k]."""

    scores: npt.NDArray[np.float32]  # [Q, k] inner product (= cosine for unit vectors)
    ids: RowIds  # [Q, k] row keys

    def hits(self, row: int) -> list[tuple[int, float]]:
        """(id, score) pairs for one query, without the padding."""
        keep = self.ids[row] != MISSING_ID
        return list(zip(self.ids[row][keep].tolist(), self.scores[row][keep].tolist(), strict=True))


class VectorIndex(Protocol):
    """A mutable id → unit-vector map answering inner-product top-k queries.

    Ids are the DB's int64 row keys (>= 0). Implementations are safe for concurrent
    `search` calls while one writer calls `upsert` / `remove`.
    """

    @property
    def dim(self) -> int: ...

    @property
    def metric(self) -> Literal["inner_product"]: ...

    def __len__(self) -> int: ...

    def upsert(self, ids: RowIds, vectors: Vectors) -> None:
        """Insert or replace: an id already present loses its old vector."""
        ...

    def remove(self, ids: RowIds) -> int:
        """Drop ids; unknown ids are ignored. Returns how many were present."""
        ...

    def search(self, queries: Vectors, k: int, allowed: RowIds | None = None) -> SearchResult:
        """Top-k by inner product; with `allowed`, only among those ids (exact k where
        at least k allowed ids are present)."""
        ...
