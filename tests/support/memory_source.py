"""An in-memory `VectorSource` with the database's sequence semantics (a test collaborator)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from service.index.base import RowIds, Vectors
from service.index.replay import RowBatch


class InMemoryVectorSource:
    """Rows keyed by id, each remembering the sequence of its latest change; deletes leave
    tombstones, as the database must. `commit_*` return the new sequence number."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.Lock()
        self._sequence = 0
        # id → (sequence of latest change, vector or None for a tombstone)
        self._rows: dict[int, tuple[int, Vectors | None]] = {}
        self.reads_after: list[int] = []  # the after_sequence of every iter_rows call

    def commit_upsert(self, ids: RowIds, vectors: Vectors) -> int:
        with self._lock:
            self._sequence += 1
            for row_id, vector in zip(ids.tolist(), vectors, strict=True):
                self._rows[row_id] = (self._sequence, np.array(vector, dtype=np.float32))
            return self._sequence

    def commit_delete(self, ids: RowIds) -> int:
        with self._lock:
            self._sequence += 1
            for row_id in ids.tolist():
                if row_id in self._rows:
                    self._rows[row_id] = (self._sequence, None)
            return self._sequence

    def live_ids(self) -> RowIds:
        with self._lock:
            live = [row_id for row_id, (_, vector) in self._rows.items() if vector is not None]
        return np.array(sorted(live), dtype=np.int64)

    def max_sequence(self) -> int:
        with self._lock:
            return self._sequence

    def iter_rows(self, after_sequence: int, batch_rows: int) -> Iterator[RowBatch]:
        with self._lock:
            self.reads_after.append(after_sequence)
            changed = sorted(
                (sequence, row_id, vector)
                for row_id, (sequence, vector) in self._rows.items()
                if sequence > after_sequence
            )
        for start in range(0, len(changed), batch_rows):
            chunk = changed[start : start + batch_rows]
            upserts = [(row_id, vector) for _, row_id, vector in chunk if vector is not None]
            deleted = [row_id for _, row_id, vector in chunk if vector is None]
            yield RowBatch(
                ids=np.array([row_id for row_id, _ in upserts], dtype=np.int64),
                vectors=np.array([vector for _, vector in upserts], dtype=np.float32).reshape(
                    -1, self.dim
                ),
                deleted_ids=np.array(deleted, dtype=np.int64),
                sequence=chunk[-1][0],
            )
