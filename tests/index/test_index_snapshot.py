"""Snapshots: exact round trip; every kind of damage or mismatch raises SnapshotInvalid."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from service.index import snapshot as snapshot_module
from service.index.faiss_index import FaissVectorIndex, IndexConfig
from service.index.snapshot import (
    SnapshotInvalid,
    load_snapshot,
    read_header,
    write_snapshot,
)
from tests.support.index_data import clustered_vectors

DIM = 16
MODEL = "notes-minilm@3"


def _index(kind: str, n: int = 800) -> tuple[FaissVectorIndex, np.ndarray, np.ndarray]:
    ids = np.arange(n, dtype=np.int64) * 5 + 3
    vectors = clustered_vectors(n, DIM, seed=7)
    index = FaissVectorIndex(DIM, IndexConfig(kind=kind))  # type: ignore[arg-type]
    index.upsert(ids, vectors)
    return index, ids, vectors


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_round_trip_is_exact(kind: str, tmp_path: Path) -> None:
    index, ids, _vectors = _index(kind)
    index.remove(ids[:50])  # HNSW keeps these as tombstones: they must survive the trip
    path = tmp_path / "a.nsidx"
    header = write_snapshot(path, index, model_ref=MODEL, sequence_watermark=42)
    assert header.count == 750 and header.sequence_watermark == 42 and header.kind == kind

    loaded, loaded_header = load_snapshot(path, model_ref=MODEL, dim=DIM)
    assert loaded_header == header == read_header(path)
    assert loaded.kind == kind and len(loaded) == 750
    queries = clustered_vectors(20, DIM, seed=8)
    before, after = index.search(queries, 10), loaded.search(queries, 10)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert not np.isin(after.ids, ids[:50]).any()
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_empty_index_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.nsidx"
    write_snapshot(path, FaissVectorIndex(DIM), model_ref=MODEL, sequence_watermark=0)
    loaded, header = load_snapshot(path, model_ref=MODEL, dim=DIM)
    assert len(loaded) == 0 and header.count == 0


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    index, _, _ = _index("hnsw")
    path = tmp_path / "s.nsidx"
    write_snapshot(path, index, model_ref=MODEL, sequence_watermark=9)
    return path


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _header_span(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    footer = struct.calcsize("<Q32s8s")
    (header_len,) = struct.unpack_from("<Q", data, len(data) - footer)
    return len(data) - footer - header_len, header_len


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: _flip_byte(p, 200), "checksum"),  # inside the FAISS bytes
        (lambda p: _flip_byte(p, p.stat().st_size - 100), "checksum"),  # ids / header
        (lambda p: _flip_byte(p, 0), "magic"),
        (lambda p: os.truncate(p, p.stat().st_size // 2), "truncated"),
        (lambda p: os.truncate(p, p.stat().st_size - 1), "truncated"),
        (lambda p: os.truncate(p, 4), "truncated"),
        (lambda p: p.write_bytes(b""), "truncated"),
        (lambda p: p.write_bytes(os.urandom(4096)), "magic"),
        (lambda p: p.unlink(), "missing"),
    ],
)
def test_damage_is_detected(snapshot_file: Path, damage: object, reason: str) -> None:
    damage(snapshot_file)  # type: ignore[operator]
    with pytest.raises(SnapshotInvalid) as caught:
        load_snapshot(snapshot_file, model_ref=MODEL, dim=DIM)
    assert caught.value.reason == reason


def test_header_edited_consistently_still_fails(snapshot_file: Path) -> None:
    # Someone rewrites the header JSON (and its length) but cannot fix the header hash.
    data = snapshot_file.read_bytes()
    start, length = _header_span(snapshot_file)
    fields = json.loads(data[start : start + length])
    fields["sequence_watermark"] = 10**9
    new_header = json.dumps(fields, sort_keys=True).encode()
    footer = data[start + length :]
    footer = struct.pack("<Q", len(new_header)) + footer[8:]
    snapshot_file.write_bytes(data[:start] + new_header + footer)
    with pytest.raises(SnapshotInvalid) as caught:
        load_snapshot(snapshot_file, model_ref=MODEL, dim=DIM)
    assert caught.value.reason == "checksum"


def test_other_model_or_dim_is_rejected(snapshot_file: Path) -> None:
    with pytest.raises(SnapshotInvalid) as caught:
        load_snapshot(snapshot_file, model_ref="notes-minilm@4", dim=DIM)
    assert caught.value.reason == "model"
    with pytest.raises(SnapshotInvalid) as caught:
        load_snapshot(snapshot_file, model_ref=MODEL, dim=DIM * 2)
    assert caught.value.reason == "dim"


def test_failed_write_keeps_the_old_snapshot(
    snapshot_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot_file.read_bytes()
    index, _, _ = _index("flat", n=100)

    def broken_write(faiss_index: object, writer: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(snapshot_module.faiss, "write_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(snapshot_file, index, model_ref=MODEL, sequence_watermark=99)
    assert snapshot_file.read_bytes() == before
    assert [p.name for p in snapshot_file.parent.iterdir()] == [snapshot_file.name]
