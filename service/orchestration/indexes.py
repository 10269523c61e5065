"""One vector index per model version, opened from its snapshot or rebuilt from the database."""

from __future__ import annotations

import logging
import threading

from service.index.replay import ManagedIndex, ManagerConfig
from service.registry.notes import NoteStore

log = logging.getLogger(__name__)


def index_ref(model_ref: str, version_id: int) -> str:
    """Snapshot identity: the registry row id keeps two databases' `m@1` apart on one disk."""
    return f"{model_ref}#{version_id}"


class NoteIndexes:
    """Indexes by registry version id. Vectors of different model versions never mix."""

    def __init__(self, store: NoteStore, config: ManagerConfig) -> None:
        self._store = store
        self._config = config
        self._indexes: dict[int, ManagedIndex] = {}
        self._lock = threading.Lock()

    def open(self, version_id: int, model_ref: str, dim: int) -> ManagedIndex:
        """The version's index, loading or rebuilding it on first use (blocking)."""
        with self._lock:
            index = self._indexes.get(version_id)
            if index is None:
                index = ManagedIndex.open(
                    model_ref=index_ref(model_ref, version_id),
                    dim=dim,
                    source=self._store.vectors.source(version_id, dim),
                    config=self._config,
                )
                self._indexes[version_id] = index
            return index

    def get(self, version_id: int) -> ManagedIndex | None:
        return self._indexes.get(version_id)

    def catch_up_all(self) -> int:
        return sum(index.catch_up() for index in list(self._indexes.values()))

    def snapshot_due(self) -> None:
        for index in list(self._indexes.values()):
            index.maybe_snapshot()

    def snapshot_failing(self) -> bool:
        """Whether any open index cannot write its snapshot (for the metric and alert)."""
        return any(not i.snapshot_status().healthy for i in list(self._indexes.values()))

    def close(self) -> None:
        for index in list(self._indexes.values()):
            index.close()
