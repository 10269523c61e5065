"""Index lifecycle per model version: snapshot or rebuild on open, replay, post-commit writes.

The database is the write-ahead log and the index a checkpoint of it. `VectorSource` is the
seam the registry layer implements; its contract:

* every committed change (insert, update, delete) of a note's vector carries a sequence
  number, strictly increasing in commit order; a delete leaves a tombstone row with its own
  sequence (kept at least until every snapshot's watermark has passed it), or replay could
  not see it;
* `iter_rows(after_sequence, ...)` yields the *current* state of every row whose latest
  change is past `after_sequence`, in ascending sequence order, in batches.

After each commit the service calls `catch_up`, which replays from the watermark: the order of
index updates is always the database's commit order, and a catch-up that failed (or one another
process's write made necessary) is repaired by the next one. Replay is state-based, so
replaying from an older point converges to the database: upsert replaces, delete of an absent
id is a no-op.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from service.index.base import RowIds, SearchResult, Vectors
from service.index.faiss_index import FaissVectorIndex, IndexConfig, IndexStats
from service.index.snapshot import SnapshotHeader, SnapshotInvalid, load_snapshot, write_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowBatch:
    """Current state of rows changed past some sequence number."""

    ids: RowIds  # [N] rows whose current state is this vector
    vectors: Vectors  # [N, D] unit length
    deleted_ids: RowIds  # [M] rows whose latest change is a deletion
    sequence: int  # highest sequence number covered by this batch


class VectorSource(Protocol):
    """The database side of replay, for one model version."""

    def max_sequence(self) -> int:
        """Highest committed sequence number (0 when empty)."""
        ...

    def iter_rows(self, after_sequence: int, batch_rows: int) -> Iterator[RowBatch]:
        """Rows whose latest change is past `after_sequence`, ascending, `batch_rows` at most
        per batch."""
        ...


@dataclass(frozen=True)
class ManagerConfig:
    snapshot_dir: Path
    # Checkpoint after this many applied rows / seconds with unsaved writes (0 = never).
    snapshot_every_writes: int = 10_000
    snapshot_every_s: float = 600.0
    replay_batch_rows: int = 4096
    index: IndexConfig = field(default_factory=IndexConfig)
    # After a failed checkpoint (disk full, read-only), wait this long before the next try.
    snapshot_retry_s: float = 30.0


OpenedFrom = Literal["snapshot", "rebuild"]


@dataclass(frozen=True)
class SnapshotStatus:
    """Whether checkpoints are being written; for /info and the logs."""

    healthy: bool  # the last checkpoint attempt succeeded (or none has failed)
    unsaved_rows: int  # applied since the last checkpoint: replayed from the database on start
    consecutive_failures: int
    last_error: str | None  # e.g. "ENOSPC: No space left on device"
    last_saved_unix_s: float | None


def describe_os_error(error: OSError) -> str:
    """`ENOSPC: No space left on device`, without the path (configuration, but noise)."""
    name = errno.errorcode.get(error.errno or 0, type(error).__name__)
    return f"{name}: {error.strerror or type(error).__name__}"


class ManagedIndex:
    """One model version's index and its checkpoint bookkeeping.

    Searches go straight to the index (concurrent); applies, replays and snapshots are
    serialised here so the watermark always describes what the index holds.
    """

    def __init__(
        self,
        *,
        model_ref: str,
        index: FaissVectorIndex,
        watermark: int,
        snapshot_path: Path,
        source: VectorSource,
        config: ManagerConfig,
        clock: Callable[[], float],
        opened_from: OpenedFrom,
        rebuild_reason: str | None,
    ) -> None:
        self.model_ref = model_ref
        self.index = index
        self.snapshot_path = snapshot_path
        self.opened_from = opened_from
        self.rebuild_reason = rebuild_reason
        self._watermark = watermark
        self._source = source
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._unsaved_rows = 0
        self._last_snapshot_at = clock()
        self._snapshot_failures = 0
        self._snapshot_error: str | None = None
        self._snapshot_retry_at = 0.0
        self._saved_unix_s: float | None = None

    @classmethod
    def open(
        cls,
        *,
        model_ref: str,
        dim: int,
        source: VectorSource,
        config: ManagerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> ManagedIndex:
        """Load the snapshot if it is valid for this model and database, else rebuild; then
        replay every change past the watermark."""
        path = snapshot_path(config.snapshot_dir, model_ref)
        started = time.perf_counter()
        opened_from: OpenedFrom = "snapshot"
        reason: str | None = None
        try:
            index, header = load_snapshot(path, model_ref=model_ref, dim=dim, config=config.index)
            watermark = header.sequence_watermark
            if watermark > source.max_sequence():
                # The database is behind the checkpoint (restored backup, another database):
                # the snapshot may hold rows the database no longer has.
                raise SnapshotInvalid("ahead_of_database")
        except SnapshotInvalid as error:
            opened_from, reason = "rebuild", error.reason
            index, watermark = FaissVectorIndex(dim, config.index), 0
            if error.reason == "missing":  # a fresh install, or a version's first start
                log.info("no index snapshot for %s yet: building it from the database", model_ref)
            else:
                log.warning(
                    "index snapshot for %s unusable (%s); rebuilding from the database",
                    model_ref,
                    error.reason,
                )
        managed = cls(
            model_ref=model_ref,
            index=index,
            watermark=watermark,
            snapshot_path=path,
            source=source,
            config=config,
            clock=clock,
            opened_from=opened_from,
            rebuild_reason=reason,
        )
        replayed = managed.catch_up()
        log.info(
            "index for %s opened from %s: %d rows, %d replayed, watermark %d, %.2f s",
            model_ref,
            opened_from,
            len(index),
            replayed,
            managed.sequence_watermark,
            time.perf_counter() - started,
        )
        if opened_from == "rebuild":
            # Not fatal if it cannot be written (a full or read-only disk): the index serves
            # from memory and the checkpoint is retried; a restart would rebuild again.
            managed.checkpoint()
        return managed

    @property
    def sequence_watermark(self) -> int:
        return self._watermark

    def stats(self) -> IndexStats:
        return self.index.stats()

    def search(self, queries: Vectors, k: int, allowed: RowIds | None = None) -> SearchResult:
        return self.index.search(queries, k, allowed)

    def catch_up(self) -> int:
        """Replay changes past the watermark; returns rows applied."""
        with self._lock:
            return self._catch_up_locked()

    def maybe_snapshot(self) -> SnapshotHeader | None:
        """Checkpoint if the write count or age policy says so (or a failed checkpoint is due
        for its retry); call it from a timer too. Never raises for a failed write."""
        with self._lock:
            if self._snapshot_due():
                return self._checkpoint_locked()
            return None

    def checkpoint(self) -> SnapshotHeader | None:
        """Checkpoint now; a failed write is logged, reported and retried later (None)."""
        with self._lock:
            return self._checkpoint_locked()

    def snapshot(self) -> SnapshotHeader:
        """Checkpoint now and raise if it cannot be written (offline jobs, the CLI)."""
        with self._lock:
            return self._snapshot_locked()

    def snapshot_status(self) -> SnapshotStatus:
        return SnapshotStatus(
            healthy=self._snapshot_failures == 0,
            unsaved_rows=self._unsaved_rows,
            consecutive_failures=self._snapshot_failures,
            last_error=self._snapshot_error,
            last_saved_unix_s=self._saved_unix_s,
        )

    def close(self) -> None:
        with self._lock:
            if self._unsaved_rows or self._snapshot_failures:
                self._checkpoint_locked()

    def _catch_up_locked(self) -> int:
        applied = 0
        for batch in self._source.iter_rows(self._watermark, self._config.replay_batch_rows):
            if batch.deleted_ids.shape[0]:
                self.index.remove(batch.deleted_ids)
            if batch.ids.shape[0]:
                self.index.upsert(batch.ids, batch.vectors)
            applied += batch.ids.shape[0] + batch.deleted_ids.shape[0]
            self._watermark = max(self._watermark, batch.sequence)
        self._unsaved_rows += applied
        return applied

    def _snapshot_due(self) -> bool:
        if self._snapshot_failures:
            return self._clock() >= self._snapshot_retry_at
        if not self._unsaved_rows:
            return False
        every_rows, every_s = self._config.snapshot_every_writes, self._config.snapshot_every_s
        return bool(
            (every_rows and self._unsaved_rows >= every_rows)
            or (every_s and self._clock() - self._last_snapshot_at >= every_s)
        )

    def _checkpoint_locked(self) -> SnapshotHeader | None:
        try:
            header = self._snapshot_locked()
        except OSError as error:
            self._snapshot_failures += 1
            self._snapshot_error = describe_os_error(error)
            self._snapshot_retry_at = self._clock() + self._config.snapshot_retry_s
            (log.error if self._snapshot_failures == 1 else log.warning)(
                "index snapshot for %s failed (%s, %d in a row): serving from memory, the "
                "database holds every change; %d rows not checkpointed, retry in %.0f s",
                self.model_ref,
                self._snapshot_error,
                self._snapshot_failures,
                self._unsaved_rows,
                self._config.snapshot_retry_s,
            )
            return None
        if self._snapshot_failures:
            log.warning(
                "index snapshot for %s written again after %d failed attempts",
                self.model_ref,
                self._snapshot_failures,
            )
        self._snapshot_failures, self._snapshot_error = 0, None
        return header

    def _snapshot_locked(self) -> SnapshotHeader:
        started = time.perf_counter()
        self.snapshot_path.parent.mkdir(parents=True, exist_ok=True)
        header = write_snapshot(
            self.snapshot_path,
            self.index,
            model_ref=self.model_ref,
            sequence_watermark=self._watermark,
        )
        self._unsaved_rows = 0
        self._last_snapshot_at = self._clock()
        self._saved_unix_s = time.time()
        log.info(
            "index snapshot for %s: %d rows, watermark %d, %.2f s",
            self.model_ref,
            header.count,
            header.sequence_watermark,
            time.perf_counter() - started,
        )
        return header


def snapshot_path(directory: Path, model_ref: str) -> Path:
    """A file name safe on any filesystem, unique per model ref even after sanitising."""
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", model_ref)[:80]
    digest = hashlib.sha256(model_ref.encode()).hexdigest()[:12]
    return Path(directory) / f"{slug}-{digest}.nsidx"
