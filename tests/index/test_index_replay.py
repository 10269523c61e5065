"""IndexManager: snapshot or rebuild on open, replay past the watermark, checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from service.index.faiss_index import IndexConfig
from service.index.replay import ManagedIndex, ManagerConfig, snapshot_path
from service.index.snapshot import read_header
from tests.support.index_data import clustered_vectors
from tests.support.memory_source import InMemoryVectorSource

DIM = 16
MODEL = "notes-minilm@3"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **overrides: object) -> ManagerConfig:
    settings: dict[str, object] = {
        "snapshot_dir": tmp_path,
        "snapshot_every_writes": 0,
        "snapshot_every_s": 0.0,
        "replay_batch_rows": 64,
        "index": IndexConfig(kind="hnsw"),
    }
    settings.update(overrides)
    return ManagerConfig(**settings)  # type: ignore[arg-type]


def _source_with_rows(n: int = 300) -> tuple[InMemoryVectorSource, np.ndarray, np.ndarray]:
    source = InMemoryVectorSource(DIM)
    ids = np.arange(n, dtype=np.int64) + 1
    vectors = clustered_vectors(n, DIM, seed=5)
    for start in range(0, n, 100):
        source.commit_upsert(ids[start : start + 100], vectors[start : start + 100])
    return source, ids, vectors


def _open(source: InMemoryVectorSource, config: ManagerConfig, **kw: object) -> ManagedIndex:
    return ManagedIndex.open(model_ref=MODEL, dim=DIM, source=source, config=config, **kw)  # type: ignore[arg-type]


def _assert_matches_source(managed: ManagedIndex, source: InMemoryVectorSource) -> None:
    live = source.live_ids()
    assert len(managed.index) == live.shape[0]
    # Every live row is found exactly once, by itself: no duplicates, no stale vectors.
    everything = managed.search(clustered_vectors(5, DIM, seed=6), live.shape[0] + 10)
    for row in range(5):
        hit_ids = [row_id for row_id, _ in everything.hits(row)]
        assert sorted(hit_ids) == live.tolist()


def test_first_open_rebuilds_then_reopens_from_snapshot(tmp_path: Path) -> None:
    source, _, _ = _source_with_rows()
    config = _config(tmp_path)
    first = _open(source, config)
    assert first.opened_from == "rebuild" and first.rebuild_reason == "missing"
    assert first.sequence_watermark == 3 and snapshot_path(tmp_path, MODEL).exists()
    _assert_matches_source(first, source)

    second = _open(source, config)
    assert second.opened_from == "snapshot" and second.sequence_watermark == 3
    assert source.reads_after == [0, 3]  # the reopen asked only for rows past the watermark
    _assert_matches_source(second, source)


def test_replay_past_the_watermark_is_exactly_once(tmp_path: Path) -> None:
    source, ids, _vectors = _source_with_rows()
    config = _config(tmp_path)
    _open(source, config).close()
    # Written while the service was down: an update, a delete, new rows.
    moved = clustered_vectors(1, DIM, seed=99)
    source.commit_upsert(ids[:1], moved)
    source.commit_delete(ids[10:20])
    new_ids = np.arange(1000, 1050, dtype=np.int64)
    source.commit_upsert(new_ids, clustered_vectors(50, DIM, seed=11))

    reopened = _open(source, config)
    assert reopened.opened_from == "snapshot"
    assert source.reads_after[-1] == 3 and reopened.sequence_watermark == 6
    _assert_matches_source(reopened, source)
    assert reopened.search(moved, 1).ids[0, 0] == ids[0]
    # Replaying the same changes again (as after a crash before the next snapshot) is a no-op.
    assert reopened.catch_up() == 0
    again = _open(source, config)
    _assert_matches_source(again, source)


def _after_commit(managed: ManagedIndex) -> None:
    """What the service does after each commit (NoteIndexes.catch_up_all, snapshot_due)."""
    managed.catch_up()
    managed.maybe_snapshot()


def test_catch_up_skips_what_the_index_already_holds(tmp_path: Path) -> None:
    source, ids, _vectors = _source_with_rows()
    managed = _open(source, _config(tmp_path))
    new_vectors = clustered_vectors(2, DIM, seed=12)
    source.commit_upsert(ids[:2], new_vectors)
    assert managed.catch_up() == 2
    assert managed.catch_up() == 0  # duplicate delivery
    sequence = source.commit_delete(ids[2:4])
    assert managed.catch_up() == 2
    assert managed.sequence_watermark == sequence
    _assert_matches_source(managed, source)


class FlakySource:
    """The database going away in the middle of a replay, once."""

    def __init__(self, source: InMemoryVectorSource) -> None:
        self.source = source
        self.fail_next = False

    def max_sequence(self) -> int:
        return self.source.max_sequence()

    def iter_rows(self, after_sequence: int, batch_rows: int):  # type: ignore[no-untyped-def]
        for number, batch in enumerate(self.source.iter_rows(after_sequence, batch_rows)):
            if self.fail_next and number == 1:
                self.fail_next = False
                raise OSError("connection lost")
            yield batch


def test_failed_catch_up_is_repaired_by_the_next_and_never_checkpointed_with_a_hole(
    tmp_path: Path,
) -> None:
    source, ids, _ = _source_with_rows()
    flaky = FlakySource(source)
    config = _config(tmp_path, replay_batch_rows=2)
    managed = _open(flaky, config)  # type: ignore[arg-type]
    good = clustered_vectors(3, DIM, seed=13)
    for i in range(3):  # one sequence number per row, as the database gives
        source.commit_upsert(ids[i : i + 1], good[i : i + 1])
    source.commit_delete(ids[5:6])
    flaky.fail_next = True
    with pytest.raises(OSError, match="connection lost"):
        managed.catch_up()  # the first batch applied, the rest not
    managed.snapshot()  # the watermark covers exactly what the index holds
    assert _open(source, config).catch_up() == 0  # reopened: snapshot + replay is complete
    _assert_matches_source(_open(source, config), source)
    assert managed.catch_up() == 2  # the next catch-up repairs the running index
    _assert_matches_source(managed, source)
    assert managed.search(good[:1], 1).ids[0, 0] == ids[0]


@pytest.mark.parametrize("problem", ["corrupt", "model", "dim", "ahead"])
def test_unusable_snapshot_is_rebuilt_from_the_source(tmp_path: Path, problem: str) -> None:
    source, _, _ = _source_with_rows()
    config = _config(tmp_path)
    _open(source, config).close()
    path = snapshot_path(tmp_path, MODEL)
    expected_reason = {"corrupt": "checksum", "model": "model", "dim": "dim"}.get(problem)
    if problem == "corrupt":
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif problem in ("model", "dim"):
        # Another model's snapshot, or this model's at another dim, under this name.
        other_ref = "other@1" if problem == "model" else MODEL
        other = InMemoryVectorSource(DIM * 2 if problem == "dim" else DIM)
        other.commit_upsert(np.array([1]), clustered_vectors(1, other.dim, seed=1))
        elsewhere = _config(tmp_path / "elsewhere")
        ManagedIndex.open(model_ref=other_ref, dim=other.dim, source=other, config=elsewhere)
        snapshot_path(tmp_path / "elsewhere", other_ref).replace(path)
    else:
        source = InMemoryVectorSource(DIM)  # the database was restored to an empty one
        expected_reason = "ahead_of_database"
    rebuilt = _open(source, config)
    assert rebuilt.opened_from == "rebuild" and rebuilt.rebuild_reason == expected_reason
    _assert_matches_source(rebuilt, source)
    assert _open(source, config).opened_from == "snapshot"  # the rebuild was checkpointed


def test_checkpoints_by_write_count_and_by_age(tmp_path: Path) -> None:
    source, ids, vectors = _source_with_rows()
    clock = FakeClock()
    config = _config(tmp_path, snapshot_every_writes=3, snapshot_every_s=60.0)
    managed = _open(source, config, clock=clock)
    path = snapshot_path(tmp_path, MODEL)
    assert managed.maybe_snapshot() is None  # nothing unsaved

    sequence = source.commit_upsert(ids[:2], vectors[:2])
    _after_commit(managed)
    assert managed.maybe_snapshot() is None
    assert read_header(path).sequence_watermark == sequence - 1
    sequence = source.commit_upsert(ids[2:3], vectors[2:3])
    _after_commit(managed)  # 3 unsaved rows: checkpoint
    assert read_header(path).sequence_watermark == sequence

    sequence = source.commit_delete(ids[3:4])
    managed.catch_up()
    clock.now += 61
    header = managed.maybe_snapshot()
    assert header is not None and header.sequence_watermark == sequence

    sequence = source.commit_delete(ids[4:5])
    managed.catch_up()
    managed.close()  # unsaved work is checkpointed on close
    assert _open(source, config).sequence_watermark == sequence


def test_snapshot_paths_are_distinct_per_model_ref(tmp_path: Path) -> None:
    assert snapshot_path(tmp_path, "a@1") != snapshot_path(tmp_path, "a_1")
    assert snapshot_path(tmp_path, "a@1") != snapshot_path(tmp_path, "a@2")


def test_a_first_start_builds_the_index_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, _, _ = _source_with_rows()
    with caplog.at_level(logging.INFO, logger="service.index.replay"):
        _open(source, _config(tmp_path)).close()  # no snapshot yet: a fresh install
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no index snapshot" in r.getMessage() for r in caplog.records)
    path = snapshot_path(tmp_path, MODEL)
    path.write_bytes(path.read_bytes()[:50])  # a damaged snapshot still warns
    caplog.clear()
    _open(source, _config(tmp_path))
    assert [r.levelno for r in caplog.records if "unusable" in r.getMessage()] == [logging.WARNING]
